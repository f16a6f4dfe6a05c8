from django import forms
from djtrace.sample_site.bookstore.models import Book


class OrderForm(forms.Form):
    """A form with varied widgets so rendering it runs many widget templates."""

    name = forms.CharField(max_length=100)
    email = forms.EmailField()
    book = forms.ModelChoiceField(queryset=Book.objects.order_by("id"))
    quantity = forms.IntegerField(min_value=1, max_value=10, initial=1)
    delivery = forms.ChoiceField(
        choices=[("post", "Post"), ("pickup", "Pick up in store")],
        widget=forms.RadioSelect,
        initial="post",
    )
    gift_wrap = forms.BooleanField(required=False)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

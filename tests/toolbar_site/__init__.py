"""sample_site with django-debug-toolbar's URLs included, as a development settings file
often has it: importing the toolbar's URLs replaces `Template._render` after djtrace."""

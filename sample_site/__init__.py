"""djtrace's bundled demo project: a small bookstore that exercises every request phase."""

"""One construct per logical component; each owns its resources and exposes them."""

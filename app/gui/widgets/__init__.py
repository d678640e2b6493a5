"""Small reusable widgets the panels draw with."""

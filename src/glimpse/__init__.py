"""Glimpse: an image service speaking the OpenStack Image (Glance) v2 API."""

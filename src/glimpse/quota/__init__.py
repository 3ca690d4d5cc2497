"""Where project limits come from: Keystone unified limits, or the legacy option."""

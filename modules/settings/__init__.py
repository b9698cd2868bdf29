"""How settings are presented and kept: labels and components, categories, applying a batch of
changes, the ui-config.json of control defaults, system information."""

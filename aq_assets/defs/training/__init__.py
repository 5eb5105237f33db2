"""Training stage: readings turned into cleaned, feature-engineered rows."""

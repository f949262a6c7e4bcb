"""The plan language: templates, concrete plans, references between steps, compiler, validator."""

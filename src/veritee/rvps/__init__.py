"""The Reference Value Provider Service: reference values that policies compare evidence with."""

"""The commands' bodies (train, evaluate, validate, features): read inputs, call the pure steps, write outputs."""

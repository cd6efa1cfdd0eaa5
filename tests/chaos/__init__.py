"""Fault-injection tests: real `taskd serve` processes against a real Redis, under faults."""

"""A real accuracy objective: a small MLP trained on scikit-learn's digits, evaluated with each layer's
weights and activations fake-quantized to its format (see proxy.py and README.md)."""

"""Model definitions that torchvision does not provide."""

"""An example mer plugin: a tiny from-scratch backbone, `example-tiny-cnn`."""

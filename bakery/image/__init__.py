"""The node image: bake steps, installer answers and the Packer HCL2 template, from the image plan."""

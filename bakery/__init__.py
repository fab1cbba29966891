"""bakery: kubeadm clusters from prebaked VM images.

Kept tiny on purpose: ``bakery --version`` imports only this module and click.
"""

__version__ = "0.1.0"

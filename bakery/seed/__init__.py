"""Each node's NoCloud seed: user-data (kubeadm, the pod network plugin, kube-vip, the first-boot script),
network-config and meta-data, from the node plans."""

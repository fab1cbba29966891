"""The cluster's secrets: the bundle (CAs, service-account key, token, admin certificate) and the
admin kubeconfig made from it."""

"""Where things live on the node: in the image, or written by cloud-init at first boot. The bake
scripts, the seeds and the node check all take these paths from here."""
# Control-plane nodes only: the audit policy and log, and encryption at rest (the API server's
# flags name them: bakery/owned.py, where the validator reads them too).
from ..owned import AUDIT_LOG, AUDIT_LOG_DIR, AUDIT_POLICY, CONTAINERD_SOCKET, ENCRYPTION_CONFIG  # noqa: F401

# Where things live on the node (in the image, or written at first boot).
BAKERY_DIR = "/opt/bakery"


def cni_dir(name: str) -> str:
    """Where the bake stores a pod network plugin's files (manifests, chart)."""
    return f"{BAKERY_DIR}/{name}"


CALICO_DIR = cni_dir("calico")
IMAGES_LIST = f"{BAKERY_DIR}/images.txt"
VERSIONS_FILE = f"{BAKERY_DIR}/versions.env"
FIRSTBOOT_DIR = "/etc/bakery"  # written by cloud-init at first boot
KUBEADM_CONFIG = f"{FIRSTBOOT_DIR}/kubeadm.yaml"


def cni_config(config_file: str) -> str:
    """Where the init node's first boot finds the document it installs the plugin with."""
    return f"{FIRSTBOOT_DIR}/{config_file}"


SENTINEL = "/var/lib/bakery/node-ready"
KUBE_VIP_MANIFEST = "/etc/kubernetes/manifests/kube-vip.yaml"
# On the init node, kube-vip starts with super-admin.conf; this admin.conf variant replaces
# it once kubeadm init has finished (see bakery/seed/kubevip.py for why).
KUBE_VIP_AFTER_INIT = "/etc/bakery/kube-vip.admin.yaml"
PKI_DIR = "/etc/kubernetes/pki"  # kubeadm's certificatesDir (its default)
ADMIN_KUBECONFIG = "/etc/kubernetes/admin.conf"  # written by kubeadm on control-plane nodes
FIRSTBOOT_SCRIPT = "/usr/local/lib/bakery/firstboot.sh"  # delivered by cloud-init, run by FIRSTBOOT_UNIT
# The systemd unit that runs the script: started by cloud-init's runcmd on the first boot, and
# again at every boot until the sentinel exists (an interrupted first boot resumes).
FIRSTBOOT_UNIT_NAME = "bakery-firstboot.service"
FIRSTBOOT_UNIT = f"/etc/systemd/system/{FIRSTBOOT_UNIT_NAME}"
FIRSTBOOT_STEPS = "/var/lib/bakery/steps"  # one file per finished step of the first boot
FIRSTBOOT_LOG = "/var/log/bakery/firstboot.log"  # the script's lines and kubeadm's output (root only)
FIRSTBOOT_ENV = f"{FIRSTBOOT_DIR}/firstboot.env"  # this node's values for the script (shell-quoted)
FIRSTBOOT_PKI_BACKUP = "/var/lib/bakery/pki"  # the seed's PKI, restored if a join is retried after reset
FIRSTBOOT_HELM = "/var/lib/bakery/helm"  # helm's cache, config and data when it installs the pod network (root only)
# The node check (issue 9, bakery/guest/nodecheck.py) in the image; first boot runs it with
# `--stage firstboot` before kubeadm when it is present and stops, with no sentinel, when
# it fails.
NODE_CHECK = "/usr/local/sbin/bakery-node-check"
NODE_CHECK_EXPECTED = f"{BAKERY_DIR}/node-check.json"  # what the node check compares with

"""The cluster rehearsal's lab (tests/rehearse.py): a rendered output folder's first boot, node
by node, in throwaway roots over one simulated cluster (tests/standins/simcluster.py)."""

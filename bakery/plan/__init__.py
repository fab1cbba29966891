"""The plan, computed once from the model: where things live on the node (paths), what goes
into the image (image), what each node's first boot does (nodes). Packer templates, cloud-init
and the node check all read it, so the bake and the first boot can never disagree about
paths, images or versions. Re-exported here, so `plan.SENTINEL`, `plan.image_plan` work."""
from .image import ImagePlan, image_plan, node_check_expectations  # noqa: F401
from .nodes import Action, NodePlan, first_boot, node_plans  # noqa: F401
from .paths import *  # noqa: F403  (the node paths)

"""Mixture-of-experts building blocks shared by every MoE model package.

route (model-specific router, see router.py) -> permute -> [all-to-all] -> grouped GEMM ->
activation -> grouped GEMM -> [all-to-all] -> unpermute (experts.py); routing statistics for the
load-balancing loss and the expert-load metrics (routing_stats.py).
"""

from .experts import GroupedExperts
from .router import softmax_then_topk, topk_then_softmax
from .routing_stats import RoutingCollector, record_routing

__all__ = ["GroupedExperts", "RoutingCollector", "record_routing", "softmax_then_topk", "topk_then_softmax"]

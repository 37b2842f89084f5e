"""The recommender: its config, the model the service serves, and training.

- :mod:`.config` — :class:`RecommenderConfig`, every hyper-parameter, checked, with one
  nested config per model (:class:`ItemKNNConfig`, ...).
- :mod:`.model` — :class:`Recommender`, the one scoring path of ``GET /recommend``,
  evaluation and tuning; :func:`load_recommender`.
- :mod:`.fitting` — fitting every model of a config on a set of events.
- :mod:`.training` — :func:`train_recommender`: tune on a validation cutoff, evaluate through
  the serving path, refit on all events.
"""

from app.ml.recommender.config import (
    DEFAULT_AGGREGATION,
    MODEL_NAMES,
    TUNED_AGGREGATIONS,
    ContentConfig,
    EASEConfig,
    ItemKNNConfig,
    RecommenderConfig,
    RP3betaConfig,
    TrendingConfig,
    UserKNNConfig,
)
from app.ml.recommender.fitting import TrainingMatrices, training_matrices
from app.ml.recommender.model import (
    DEFAULT_HOME_REPEAT_SHARE,
    Recommendations,
    Recommender,
    load_recommender,
)
from app.ml.recommender.training import TrainedRecommender, train_recommender

__all__ = [
    "DEFAULT_AGGREGATION",
    "DEFAULT_HOME_REPEAT_SHARE",
    "MODEL_NAMES",
    "TUNED_AGGREGATIONS",
    "ContentConfig",
    "EASEConfig",
    "ItemKNNConfig",
    "RP3betaConfig",
    "Recommendations",
    "Recommender",
    "RecommenderConfig",
    "TrainedRecommender",
    "TrainingMatrices",
    "TrendingConfig",
    "UserKNNConfig",
    "load_recommender",
    "train_recommender",
    "training_matrices",
]

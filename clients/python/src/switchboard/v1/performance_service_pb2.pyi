import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from switchboard.v1 import types_pb2 as _types_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportCompletionRequest(_message.Message):
    __slots__ = ("subtask_id", "specialist_id", "epoch", "success", "completion_time_ms", "quality_score", "detail", "incarnation")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    SPECIALIST_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    specialist_id: str
    epoch: int
    success: bool
    completion_time_ms: int
    quality_score: float
    detail: str
    incarnation: str
    def __init__(self, subtask_id: _Optional[str] = ..., specialist_id: _Optional[str] = ..., epoch: _Optional[int] = ..., success: _Optional[bool] = ..., completion_time_ms: _Optional[int] = ..., quality_score: _Optional[float] = ..., detail: _Optional[str] = ..., incarnation: _Optional[str] = ...) -> None: ...

class ReportCompletionResponse(_message.Message):
    __slots__ = ("assignment",)
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: _types_pb2.Assignment
    def __init__(self, assignment: _Optional[_Union[_types_pb2.Assignment, _Mapping]] = ...) -> None: ...

class GetPerformanceRequest(_message.Message):
    __slots__ = ("specialist_id",)
    SPECIALIST_ID_FIELD_NUMBER: _ClassVar[int]
    specialist_id: str
    def __init__(self, specialist_id: _Optional[str] = ...) -> None: ...

class GetPerformanceResponse(_message.Message):
    __slots__ = ("specialist_id", "completed", "succeeded", "success_rate", "mean_quality", "mean_completion_time_ms", "performance", "recent_outcomes")
    SPECIALIST_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_QUALITY_FIELD_NUMBER: _ClassVar[int]
    MEAN_COMPLETION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_FIELD_NUMBER: _ClassVar[int]
    RECENT_OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    specialist_id: str
    completed: int
    succeeded: int
    success_rate: float
    mean_quality: float
    mean_completion_time_ms: float
    performance: float
    recent_outcomes: int
    def __init__(self, specialist_id: _Optional[str] = ..., completed: _Optional[int] = ..., succeeded: _Optional[int] = ..., success_rate: _Optional[float] = ..., mean_quality: _Optional[float] = ..., mean_completion_time_ms: _Optional[float] = ..., performance: _Optional[float] = ..., recent_outcomes: _Optional[int] = ...) -> None: ...

class GetModelStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ScoringWeights(_message.Message):
    __slots__ = ("capability", "load", "availability", "performance")
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_FIELD_NUMBER: _ClassVar[int]
    capability: float
    load: float
    availability: float
    performance: float
    def __init__(self, capability: _Optional[float] = ..., load: _Optional[float] = ..., availability: _Optional[float] = ..., performance: _Optional[float] = ...) -> None: ...

class HoldoutMetrics(_message.Message):
    __slots__ = ("log_loss", "auc", "accuracy", "quality_mae", "examples")
    LOG_LOSS_FIELD_NUMBER: _ClassVar[int]
    AUC_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    QUALITY_MAE_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    log_loss: float
    auc: float
    accuracy: float
    quality_mae: float
    examples: int
    def __init__(self, log_loss: _Optional[float] = ..., auc: _Optional[float] = ..., accuracy: _Optional[float] = ..., quality_mae: _Optional[float] = ..., examples: _Optional[int] = ...) -> None: ...

class GetModelStatusResponse(_message.Message):
    __slots__ = ("scorer", "weights", "performance_prior", "performance_window", "detail", "model_version", "training_set_size", "holdout", "last_trained_at", "examples", "trainings", "rejected_trainings", "learned_performance_weight")
    SCORER_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_PRIOR_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_WINDOW_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    LAST_TRAINED_AT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TRAININGS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_TRAININGS_FIELD_NUMBER: _ClassVar[int]
    LEARNED_PERFORMANCE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    scorer: str
    weights: ScoringWeights
    performance_prior: float
    performance_window: int
    detail: str
    model_version: int
    training_set_size: int
    holdout: HoldoutMetrics
    last_trained_at: _timestamp_pb2.Timestamp
    examples: int
    trainings: int
    rejected_trainings: int
    learned_performance_weight: float
    def __init__(self, scorer: _Optional[str] = ..., weights: _Optional[_Union[ScoringWeights, _Mapping]] = ..., performance_prior: _Optional[float] = ..., performance_window: _Optional[int] = ..., detail: _Optional[str] = ..., model_version: _Optional[int] = ..., training_set_size: _Optional[int] = ..., holdout: _Optional[_Union[HoldoutMetrics, _Mapping]] = ..., last_trained_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., examples: _Optional[int] = ..., trainings: _Optional[int] = ..., rejected_trainings: _Optional[int] = ..., learned_performance_weight: _Optional[float] = ...) -> None: ...

//! Subtasks as submitted, their assignment state, and the events specialists watch.

use super::scoring::ScoreBreakdown;

/// What Assign asks for, validated and normalised (capability and dependency lists sorted, deduplicated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskSpec {
    pub subtask_id: String,
    pub specialist_type: String,
    pub required_capabilities: Vec<String>,
    pub priority: i32,
    pub parent_id: Option<String>,
    pub depends_on: Vec<String>,
    pub payload: Vec<u8>,
    pub require_all_capabilities: bool,
}

/// A subtask with the time the store first accepted it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subtask {
    pub spec: SubtaskSpec,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubtaskState {
    Assigned,
    Queued,
    Blocked,
    Completed,
    Failed,
    Cancelled,
}

impl SubtaskState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SubtaskState::Completed | SubtaskState::Failed | SubtaskState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubtaskState::Assigned => "ASSIGNED",
            SubtaskState::Queued => "QUEUED",
            SubtaskState::Blocked => "BLOCKED",
            SubtaskState::Completed => "COMPLETED",
            SubtaskState::Failed => "FAILED",
            SubtaskState::Cancelled => "CANCELLED",
        }
    }
}

/// Who holds a subtask and how it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub specialist_id: String,
    pub epoch: u64,
    pub assigned_at_ms: i64,
    pub breakdown: ScoreBreakdown,
}

/// The assignment state of one subtask, as every read and write reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentView {
    pub subtask_id: String,
    pub state: SubtaskState,
    /// Set while ASSIGNED, and kept when a report finished it.
    pub holder: Option<Holder>,
    /// Real 1-based rank in its queue, only while QUEUED.
    pub queue_position: Option<u64>,
    pub attempt: u32,
    pub routed_type: String,
    pub waiting_on: Vec<String>,
    pub detail: String,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// What a specialist's watch stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventKind {
    Assigned,
    Revoked,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub kind: WatchEventKind,
    pub assignment: AssignmentView,
    pub subtask: Subtask,
}

impl WatchEvent {
    pub fn epoch(&self) -> u64 {
        self.assignment
            .holder
            .as_ref()
            .map_or(0, |holder| holder.epoch)
    }
}

/// A completion report, fenced by specialist and epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionReport {
    pub subtask_id: String,
    pub specialist_id: String,
    pub epoch: u64,
    pub success: bool,
    pub completion_time_ms: u64,
    pub quality_score: f64,
    pub detail: String,
    /// The holder's incarnation; None is fenced by the epoch alone.
    pub incarnation: Option<String>,
}

/// A hand-back, fenced by specialist and epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRequest {
    pub subtask_id: String,
    pub specialist_id: String,
    pub epoch: u64,
    pub reason: String,
    /// The holder's incarnation; None is fenced by the epoch alone.
    pub incarnation: Option<String>,
}

//! QueueService: where queued work stands.

use tonic::{Request, Response, Status};

use crate::pb;
use crate::pb::queue_service_server::QueueService;

use super::status::ApiError;
use super::ApiContext;
use super::{auth, convert};
use crate::auth::access::Need;

pub struct QueueApi {
    context: ApiContext,
}

impl QueueApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl QueueService for QueueApi {
    async fn get_queue_position(
        &self,
        request: Request<pb::GetQueuePositionRequest>,
    ) -> Result<Response<pb::GetQueuePositionResponse>, Status> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        convert::id("subtask_id", &request.subtask_id)?;
        auth::allow(&caller, Need::Subtask(&request.subtask_id))?;
        let position = self
            .context
            .store
            .queue_position(&request.subtask_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetQueuePositionResponse {
            subtask_id: position.subtask_id,
            routed_type: position.routed_type,
            queue_position: position.position,
            queue_depth: position.depth,
        }))
    }

    async fn list_queue(
        &self,
        request: Request<pb::ListQueueRequest>,
    ) -> Result<Response<pb::ListQueueResponse>, Status> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        convert::required_type(
            "specialist_type",
            &request.specialist_type,
            &self.context.policy,
        )?;
        auth::allow(&caller, Need::QueueEntries(&request.specialist_type))?;
        let page = convert::page_request(request.page_size, request.page_token)?;
        let page = self
            .context
            .store
            .list_queue(&request.specialist_type, page)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListQueueResponse {
            subtasks: page
                .entries
                .into_iter()
                .map(|entry| pb::QueuedSubtask {
                    subtask_id: entry.subtask_id,
                    queue_position: entry.position,
                    priority: entry.priority,
                    attempt: entry.attempt,
                    required_capabilities: entry.required_capabilities,
                    enqueued_at: Some(convert::timestamp(entry.enqueued_at_ms)),
                })
                .collect(),
            queue_depth: page.depth,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_queue_stats(
        &self,
        request: Request<pb::GetQueueStatsRequest>,
    ) -> Result<Response<pb::GetQueueStatsResponse>, Status> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        let specialist_type = convert::type_filter(
            "specialist_type",
            &request.specialist_type,
            &self.context.policy,
        )?;
        auth::allow(&caller, Need::QueueStats(specialist_type.as_deref()))?;
        let stats = self
            .context
            .store
            .queue_stats(specialist_type.as_deref())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetQueueStatsResponse {
            types: stats
                .into_iter()
                .map(|stats| pb::TypeQueueStats {
                    specialist_type: stats.specialist_type,
                    depth: stats.depth,
                    oldest_wait_ms: stats.oldest_wait_ms,
                    specialists: Some(pb::AvailabilityCounts {
                        online: stats.specialists.online,
                        idle: stats.specialists.idle,
                        busy: stats.specialists.busy,
                        away: stats.specialists.away,
                        offline: stats.specialists.offline,
                    }),
                    active_assignments: stats.active_assignments,
                    blocked: stats.blocked,
                    free_capacity: stats.free_capacity,
                })
                .collect(),
        }))
    }
}

//! AssignService: submit, inspect, hand back and cancel subtasks; watch assignments.

use tonic::{Request, Response, Status};
use tracing::info;

use crate::metrics as names;
use crate::pb;
use crate::pb::assign_service_server::AssignService;

use super::status::ApiError;
use super::watch::{self, WatchStream};
use super::{caller_of, convert, ApiContext};

pub struct AssignApi {
    context: ApiContext,
}

impl AssignApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl AssignService for AssignApi {
    async fn assign(
        &self,
        request: Request<pb::AssignRequest>,
    ) -> Result<Response<pb::AssignResponse>, Status> {
        let caller = caller_of(&request)?;
        if let Err(retry_after) = self.context.assign_limiter.check(&caller) {
            metrics::counter!(names::RATE_LIMITED, "method" => "Assign").increment(1);
            return Err(ApiError::RateLimited {
                message: format!(
                    "assign rate limit exceeded for caller {caller}; retry in {} ms",
                    retry_after.as_millis()
                ),
                retry_after,
            }
            .into());
        }
        let request = request.into_inner();
        let hints = pb::AssignRequest {
            description: request.description.clone(),
            estimated_duration_ms: request.estimated_duration_ms,
            ..Default::default()
        };
        let spec = convert::subtask_spec(request, &self.context.policy).inspect_err(|_| {
            metrics::counter!(names::ASSIGNMENTS, "outcome" => "rejected").increment(1);
        })?;
        let view = self
            .context
            .assigner
            .assign(spec, |spec| convert::subtask_context(spec, &hints))
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::AssignResponse {
            subtask_id: view.subtask_id.clone(),
            assignment: Some(convert::assignment_to_proto(view)),
        }))
    }

    async fn get_assignment(
        &self,
        request: Request<pb::GetAssignmentRequest>,
    ) -> Result<Response<pb::GetAssignmentResponse>, Status> {
        let request = request.into_inner();
        convert::id("subtask_id", &request.subtask_id)?;
        let (view, subtask) = self
            .context
            .store
            .get_assignment(&request.subtask_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetAssignmentResponse {
            assignment: Some(convert::assignment_to_proto(view)),
            subtask: Some(convert::subtask_to_proto(subtask)),
        }))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let release = convert::release_request(request.into_inner())?;
        let (subtask_id, specialist_id) =
            (release.subtask_id.clone(), release.specialist_id.clone());
        let view = self
            .context
            .store
            .release(release)
            .await
            .map_err(ApiError::from)?;
        info!(%subtask_id, %specialist_id, state = view.state.as_str(), "released");
        Ok(Response::new(pb::ReleaseResponse {
            assignment: Some(convert::assignment_to_proto(view)),
        }))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let request = request.into_inner();
        convert::cancel_request(&request)?;
        let view = self
            .context
            .store
            .cancel(&request.subtask_id, &request.reason)
            .await
            .map_err(ApiError::from)?;
        info!(subtask_id = %request.subtask_id, "cancelled");
        Ok(Response::new(pb::CancelResponse {
            assignment: Some(convert::assignment_to_proto(view)),
        }))
    }

    type WatchAssignmentsStream = WatchStream;

    async fn watch_assignments(
        &self,
        request: Request<pb::WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        let request = request.into_inner();
        let mut violations = convert::Violations::default();
        violations.id("specialist_id", &request.specialist_id);
        violations.incarnation("incarnation", &request.incarnation);
        violations.finish()?;
        let stream = watch::open(
            self.context.clone(),
            request.specialist_id,
            request.incarnation,
        )
        .await?;
        Ok(Response::new(stream))
    }
}

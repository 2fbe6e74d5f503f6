//! AssignService: submit, inspect, hand back and cancel subtasks; watch assignments.

use tonic::{Request, Response, Status};
use tracing::info;

use crate::metrics as names;
use crate::pb;
use crate::pb::assign_service_server::AssignService;

use super::status::ApiError;
use super::watch::{self, WatchStream};
use super::{auth, caller_of, convert, ApiContext};
use crate::auth::access::Need;

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
        let who = auth::caller(&request);
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
        auth::allow(
            &who,
            Need::Submit {
                subtask_id: &spec.subtask_id,
                specialist_type: &spec.specialist_type,
            },
        )?;
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
        let caller = auth::caller(&request);
        let request = request.into_inner();
        convert::id("subtask_id", &request.subtask_id)?;
        // Its submitter may read it; an agent, only while one of its specialists holds it (and
        // it learns nothing of other subtasks, not even whether they exist).
        let as_submitter = auth::allow(&caller, Need::Subtask(&request.subtask_id));
        if let (Err(denied), false) = (&as_submitter, auth::is_agent(&caller)) {
            return Err(ApiError::PermissionDenied(denied.to_string()).into());
        }
        let found = self.context.store.get_assignment(&request.subtask_id).await;
        if as_submitter.is_err() {
            let holder = found
                .as_ref()
                .ok()
                .and_then(|(view, _)| view.holder.as_ref())
                .map(|holder| holder.specialist_id.as_str());
            auth::allow(&caller, Need::HeldSubtask { holder })?;
        }
        let (view, subtask) = found.map_err(ApiError::from)?;
        Ok(Response::new(pb::GetAssignmentResponse {
            assignment: Some(convert::assignment_to_proto(view)),
            subtask: Some(convert::subtask_to_proto(subtask)),
        }))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let caller = auth::caller(&request);
        let release = convert::release_request(request.into_inner())?;
        auth::allow(&caller, Need::ActFor(&release.specialist_id))?;
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
        let caller = auth::caller(&request);
        let request = request.into_inner();
        convert::cancel_request(&request)?;
        auth::allow(&caller, Need::Subtask(&request.subtask_id))?;
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
        let caller = auth::caller(&request);
        let limit_key = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = convert::Violations::default();
        violations.id("specialist_id", &request.specialist_id);
        violations.incarnation("incarnation", &request.incarnation);
        violations.finish()?;
        auth::allow(&caller, Need::ActFor(&request.specialist_id))?;
        let stream = watch::open(
            self.context.clone(),
            limit_key,
            request.specialist_id,
            request.incarnation,
        )
        .await?;
        Ok(Response::new(stream))
    }
}

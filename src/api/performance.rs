//! PerformanceService: outcomes in, what the scorer knows out.

use tonic::{Request, Response, Status};
use tracing::info;

use crate::learned_scorer::LearnedEngine;
use crate::pb;
use crate::pb::performance_service_server::PerformanceService;

use super::status::ApiError;
use super::ApiContext;
use super::{auth, convert};
use crate::auth::access::Need;

pub struct PerformanceApi {
    context: ApiContext,
}

impl PerformanceApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl PerformanceService for PerformanceApi {
    async fn report_completion(
        &self,
        request: Request<pb::ReportCompletionRequest>,
    ) -> Result<Response<pb::ReportCompletionResponse>, Status> {
        let caller = auth::caller(&request);
        let report = convert::completion_report(request.into_inner())?;
        auth::allow(&caller, Need::ActFor(&report.specialist_id))?;
        let (subtask_id, specialist_id, success) = (
            report.subtask_id.clone(),
            report.specialist_id.clone(),
            report.success,
        );
        let view = self
            .context
            .assigner
            .report(report)
            .await
            .map_err(ApiError::from)?;
        info!(%subtask_id, %specialist_id, success, "completion reported");
        Ok(Response::new(pb::ReportCompletionResponse {
            assignment: Some(convert::assignment_to_proto(view)),
        }))
    }

    async fn get_performance(
        &self,
        request: Request<pb::GetPerformanceRequest>,
    ) -> Result<Response<pb::GetPerformanceResponse>, Status> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        convert::id("specialist_id", &request.specialist_id)?;
        auth::allow(&caller, Need::ReadSpecialist(&request.specialist_id))?;
        let summary = self
            .context
            .store
            .performance(&request.specialist_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetPerformanceResponse {
            specialist_id: request.specialist_id,
            completed: summary.completed,
            succeeded: summary.succeeded,
            success_rate: summary.success_rate,
            mean_quality: summary.mean_quality,
            mean_completion_time_ms: summary.mean_completion_time_ms,
            performance: summary.performance,
            recent_outcomes: summary.recent_outcomes,
        }))
    }

    async fn get_model_status(
        &self,
        request: Request<pb::GetModelStatusRequest>,
    ) -> Result<Response<pb::GetModelStatusResponse>, Status> {
        auth::allow(&auth::caller(&request), Need::ModelStatus)?;
        let learned = self.context.engine.as_ref().map(LearnedEngine::status);
        Ok(Response::new(convert::model_status(
            &self.context.policy,
            learned,
        )))
    }
}

//! RegisterService: specialists join, heartbeat and leave.

use tonic::{Request, Response, Status};
use tracing::info;

use crate::pb;
use crate::pb::register_service_server::RegisterService;

use super::status::ApiError;
use super::ApiContext;
use super::{auth, convert};
use crate::auth::access::Need;

pub struct RegisterApi {
    context: ApiContext,
}

impl RegisterApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl RegisterService for RegisterApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let caller = auth::caller(&request);
        let registration = convert::registration(request.into_inner(), &self.context.policy)?;
        auth::allow(
            &caller,
            match &registration.specialist_id {
                Some(specialist_id) => Need::ActFor(specialist_id),
                None => Need::MintSpecialist,
            },
        )?;
        let registered = self
            .context
            .store
            .register(registration)
            .await
            .map_err(ApiError::from)?;
        let specialist = registered.specialist;
        info!(
            specialist_id = %specialist.specialist_id,
            specialist_type = %specialist.specialist_type,
            created = registered.created,
            incarnation = %registered.incarnation,
            "specialist registered"
        );
        Ok(Response::new(pb::RegisterResponse {
            specialist: Some(convert::specialist_to_proto(specialist)),
            heartbeat_interval_ms: self.context.heartbeat_interval_ms,
            lease_ttl_ms: self.context.policy.lease_ttl_ms,
            incarnation: registered.incarnation,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        let mut violations = convert::Violations::default();
        violations.id("specialist_id", &request.specialist_id);
        violations.incarnation("incarnation", &request.incarnation);
        let availability =
            convert::availability_from_proto("availability", request.availability, &mut violations);
        violations.finish()?;
        auth::allow(&caller, Need::ActFor(&request.specialist_id))?;
        let specialist = self
            .context
            .store
            .heartbeat(&request.specialist_id, &request.incarnation, availability)
            .await
            .map_err(ApiError::from)?;
        let lease_expires_at = convert::timestamp(specialist.lease_expires_at_ms);
        Ok(Response::new(pb::HeartbeatResponse {
            specialist: Some(convert::specialist_to_proto(specialist)),
            lease_expires_at: Some(lease_expires_at),
        }))
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        convert::id("specialist_id", &request.specialist_id)?;
        auth::allow(&caller, Need::ActFor(&request.specialist_id))?;
        let requeued = self
            .context
            .store
            .deregister(&request.specialist_id)
            .await
            .map_err(ApiError::from)?;
        info!(specialist_id = %request.specialist_id, requeued = requeued.len(), "specialist deregistered");
        Ok(Response::new(pb::DeregisterResponse {
            requeued_subtask_ids: requeued,
        }))
    }

    async fn get_specialist(
        &self,
        request: Request<pb::GetSpecialistRequest>,
    ) -> Result<Response<pb::GetSpecialistResponse>, Status> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        convert::id("specialist_id", &request.specialist_id)?;
        auth::allow(&caller, Need::ReadSpecialist(&request.specialist_id))?;
        let specialist = self
            .context
            .store
            .get_specialist(&request.specialist_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetSpecialistResponse {
            specialist: Some(convert::specialist_to_proto(specialist)),
        }))
    }

    async fn list_specialists(
        &self,
        request: Request<pb::ListSpecialistsRequest>,
    ) -> Result<Response<pb::ListSpecialistsResponse>, Status> {
        auth::allow(&auth::caller(&request), Need::ReadAllSpecialists)?;
        let request = request.into_inner();
        let specialist_type = convert::type_filter(
            "specialist_type",
            &request.specialist_type,
            &self.context.policy,
        )?;
        let page = convert::page_request(request.page_size, request.page_token)?;
        let page = self
            .context
            .store
            .list_specialists(specialist_type.as_deref(), page)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListSpecialistsResponse {
            specialists: page
                .items
                .into_iter()
                .map(convert::specialist_to_proto)
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}

//! What each role may do: every call names what it touches, and `check` says yes or why not.

use super::{Caller, Claims, Role};

/// What a call touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Act as this specialist: register, heartbeat, deregister, watch, report, release.
    ActFor(&'a str),
    /// Register a specialist under an id the server mints (no id given).
    MintSpecialist,
    /// Read this specialist (GetSpecialist, GetPerformance).
    ReadSpecialist(&'a str),
    /// Every specialist (ListSpecialists).
    ReadAllSpecialists,
    /// Submit this subtask to this type.
    Submit {
        subtask_id: &'a str,
        specialist_type: &'a str,
    },
    /// Cancel or read this subtask (GetAssignment, GetQueuePosition, Cancel), as its submitter.
    Subtask(&'a str),
    /// Read a subtask held by one of the caller's specialists (an agent's GetAssignment).
    HeldSubtask { holder: Option<&'a str> },
    /// The queue's entries of a type (ListQueue: every tenant's subtask ids).
    QueueEntries(&'a str),
    /// A type's queue counts (GetQueueStats; None: every type).
    QueueStats(Option<&'a str>),
    /// The learned scorer's status.
    ModelStatus,
}

/// The refusal: what is missing, for PERMISSION_DENIED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// Whether `caller` may do what `need` says.
pub fn check(caller: &Caller, need: Need<'_>) -> Result<(), Denied> {
    let claims = match caller {
        Caller::Anyone => return Ok(()),
        Caller::Token(claims) => claims,
    };
    match claims.role {
        Role::Admin => Ok(()),
        Role::Agent => agent(claims, need),
        Role::Orchestrator => orchestrator(claims, need),
    }
}

fn agent(claims: &Claims, need: Need<'_>) -> Result<(), Denied> {
    let own = |id: &str| claims.specialists.iter().any(|mine| mine == id);
    match need {
        Need::ActFor(id) | Need::ReadSpecialist(id) if own(id) => Ok(()),
        Need::ActFor(id) | Need::ReadSpecialist(id) => Err(Denied(format!(
            "this agent token acts for {} only, not for specialist {id}",
            list(&claims.specialists)
        ))),
        Need::MintSpecialist => Err(Denied(
            "an agent token registers under its own specialist id: set specialist_id".into(),
        )),
        Need::HeldSubtask { holder: Some(id) } if own(id) => Ok(()),
        Need::HeldSubtask { .. } => Err(Denied(format!(
            "this agent token reads only subtasks held by {}",
            list(&claims.specialists)
        ))),
        Need::ModelStatus => Ok(()),
        _ => Err(Denied(
            "an agent token acts for its specialists only; this call needs an orchestrator or admin token"
                .into(),
        )),
    }
}

fn orchestrator(claims: &Claims, need: Need<'_>) -> Result<(), Denied> {
    let in_tenant = |subtask_id: &str| match &claims.tenant {
        None => Ok(()),
        Some(tenant) => {
            let owned = subtask_id
                .strip_prefix(tenant.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
            if owned {
                Ok(())
            } else {
                Err(Denied(format!(
                    "tenant {tenant}'s orchestrator token acts on subtask ids starting with \"{tenant}/\", not on {subtask_id}"
                )))
            }
        }
    };
    let typed = |specialist_type: &str| {
        if claims.types.is_empty()
            || claims
                .types
                .iter()
                .any(|allowed| allowed == specialist_type)
        {
            Ok(())
        } else {
            Err(Denied(format!(
                "this orchestrator token submits to types {} only, not to {specialist_type}",
                list(&claims.types)
            )))
        }
    };
    match need {
        Need::Submit {
            subtask_id,
            specialist_type,
        } => {
            in_tenant(subtask_id)?;
            typed(specialist_type)
        }
        Need::Subtask(subtask_id) => in_tenant(subtask_id),
        Need::QueueEntries(specialist_type) => {
            if let Some(tenant) = &claims.tenant {
                return Err(Denied(format!(
                    "ListQueue shows every tenant's subtasks; tenant {tenant}'s token reads its own with GetAssignment and GetQueuePosition"
                )));
            }
            typed(specialist_type)
        }
        Need::QueueStats(Some(specialist_type)) => typed(specialist_type),
        Need::QueueStats(None)
        | Need::ReadSpecialist(_)
        | Need::ReadAllSpecialists
        | Need::ModelStatus => Ok(()),
        Need::ActFor(id) => Err(Denied(format!(
            "an orchestrator token cannot act for specialist {id}: that needs the specialist's agent token (or admin)"
        ))),
        Need::MintSpecialist | Need::HeldSubtask { .. } => Err(Denied(
            "an orchestrator token cannot act for specialists: that needs an agent token (or admin)".into(),
        )),
    }
}

fn list(values: &[String]) -> String {
    if values.is_empty() {
        "nothing".into()
    } else {
        values.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role, specialists: &[&str], tenant: Option<&str>, types: &[&str]) -> Caller {
        Caller::Token(Claims {
            kid: "k".into(),
            role,
            sub: "s".into(),
            specialists: specialists.iter().map(|id| id.to_string()).collect(),
            tenant: tenant.map(str::to_string),
            types: types.iter().map(|id| id.to_string()).collect(),
            iat: 0,
            exp: 1,
            jti: "j".into(),
        })
    }

    #[test]
    fn each_role_gets_what_it_needs_and_no_more() {
        let agent = token(Role::Agent, &["fe-1"], None, &[]);
        assert!(check(&agent, Need::ActFor("fe-1")).is_ok());
        assert!(check(&agent, Need::ActFor("fe-2")).is_err());
        assert!(check(&agent, Need::MintSpecialist).is_err());
        assert!(check(
            &agent,
            Need::HeldSubtask {
                holder: Some("fe-1")
            }
        )
        .is_ok());
        assert!(check(
            &agent,
            Need::HeldSubtask {
                holder: Some("fe-2")
            }
        )
        .is_err());
        assert!(check(&agent, Need::HeldSubtask { holder: None }).is_err());
        assert!(check(&agent, Need::Subtask("t")).is_err());
        assert!(check(
            &agent,
            Need::Submit {
                subtask_id: "t",
                specialist_type: "frontend"
            }
        )
        .is_err());

        let acme = token(Role::Orchestrator, &[], Some("acme"), &["frontend"]);
        let submit = |subtask_id, specialist_type| Need::Submit {
            subtask_id,
            specialist_type,
        };
        assert!(check(&acme, submit("acme/t1", "frontend")).is_ok());
        assert!(check(&acme, submit("acme/t1", "backend")).is_err());
        assert!(check(&acme, submit("acmeX/t1", "frontend")).is_err());
        assert!(check(&acme, submit("other/t1", "frontend")).is_err());
        assert!(check(&acme, Need::Subtask("acme/t1")).is_ok());
        assert!(check(&acme, Need::Subtask("other/t1")).is_err());
        assert!(check(&acme, Need::QueueEntries("frontend")).is_err());
        assert!(check(&acme, Need::ActFor("fe-1")).is_err());
        let everyone = token(Role::Orchestrator, &[], None, &[]);
        assert!(check(&everyone, Need::QueueEntries("frontend")).is_ok());
        assert!(check(&everyone, Need::Subtask("any")).is_ok());

        let admin = token(Role::Admin, &[], None, &[]);
        assert!(check(&admin, Need::ActFor("fe-9")).is_ok());
        assert!(check(&Caller::Anyone, Need::ActFor("fe-9")).is_ok());
    }
}

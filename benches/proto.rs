//! Encode and decode of the largest messages: an Assign with a 1 MiB payload and a watch event.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use switchboard::pb;

fn assign_request(payload_bytes: usize) -> pb::AssignRequest {
    pb::AssignRequest {
        subtask_id: "subtask-0123456789".into(),
        specialist_type: "frontend".into(),
        required_capabilities: (0..64).map(|n| format!("capability-{n:02}")).collect(),
        priority: 10,
        parent_id: "plan-42".into(),
        depends_on: (0..64).map(|n| format!("dependency-{n:02}")).collect(),
        payload: vec![b'x'; payload_bytes],
        require_all_capabilities: false,
        description: String::new(),
        estimated_duration_ms: None,
    }
}

fn watch_event() -> pb::WatchAssignmentsResponse {
    let request = assign_request(64 * 1024);
    let factor = pb::ScoreFactor {
        value: 0.8,
        weight: 0.3,
        points: 24.0,
    };
    pb::WatchAssignmentsResponse {
        kind: pb::WatchEventKind::Assigned as i32,
        assignment: Some(pb::Assignment {
            subtask_id: request.subtask_id.clone(),
            state: pb::AssignmentState::Assigned as i32,
            specialist_id: "specialist-frontend-17".into(),
            score: 91.5,
            breakdown: Some(pb::ScoreBreakdown {
                capability: Some(factor),
                load: Some(factor),
                availability: Some(factor),
                performance: Some(factor),
            }),
            epoch: 123_456,
            attempt: 1,
            routed_type: "frontend".into(),
            ..Default::default()
        }),
        subtask: Some(pb::Subtask {
            subtask_id: request.subtask_id,
            specialist_type: request.specialist_type,
            required_capabilities: request.required_capabilities,
            priority: request.priority,
            parent_id: request.parent_id,
            depends_on: request.depends_on,
            payload: request.payload,
            require_all_capabilities: false,
            created_at: None,
        }),
    }
}

fn bench_messages(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("proto");
    let largest = assign_request(1024 * 1024);
    let encoded = largest.encode_to_vec();
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode AssignRequest 1 MiB", |bencher| {
        bencher.iter(|| black_box(&largest).encode_to_vec())
    });
    group.bench_function("decode AssignRequest 1 MiB", |bencher| {
        bencher.iter(|| pb::AssignRequest::decode(black_box(encoded.as_slice())).expect("decodes"))
    });
    let event = watch_event();
    let event_bytes = event.encode_to_vec();
    group.throughput(Throughput::Bytes(event_bytes.len() as u64));
    group.bench_function("encode WatchAssignmentsResponse 64 KiB", |bencher| {
        bencher.iter(|| black_box(&event).encode_to_vec())
    });
    group.bench_function("decode WatchAssignmentsResponse 64 KiB", |bencher| {
        bencher.iter(|| {
            pb::WatchAssignmentsResponse::decode(black_box(event_bytes.as_slice()))
                .expect("decodes")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_messages);
criterion_main!(benches);

// Package switchboard is the Go client of Switchboard, the gRPC control plane that hands work to AI
// agents: a Client with the generated stubs (package switchboardv1 under ./v1) and helpers for
// orchestrators, and an Agent that registers, heartbeats, streams its assignments (reconnecting
// without losing work) and reports how they went, with epoch fencing. Connect takes a bearer
// token and TLS files; calls the server refuses for now (RESOURCE_EXHAUSTED, UNAVAILABLE) are
// retried a bounded number of times, waiting the delay the server gives (see RetryPolicy).
package switchboard

import (
	"context"
	"fmt"
	"strings"
	"time"

	pb "github.com/switchboard-dev/switchboard/clients/go/switchboard/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Client holds one connection and the generated stub of every service on it.
type Client struct {
	Conn        *grpc.ClientConn
	Register    pb.RegisterServiceClient
	Assign      pb.AssignServiceClient
	Queue       pb.QueueServiceClient
	Performance pb.PerformanceServiceClient
	Health      healthpb.HealthClient
}

// Dial connects to a Switchboard server at address (host:port) over plaintext, without a token,
// with the default retries; Connect takes a token, TLS files and a retry policy. The connection is
// made lazily; use WaitReady to wait for the server.
func Dial(address string, opts ...grpc.DialOption) (*Client, error) {
	return Connect(address, Config{DialOptions: opts})
}

// NewClient wraps an existing connection (made without Connect: no retries unless its options
// add them).
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{
		Conn:        conn,
		Register:    pb.NewRegisterServiceClient(conn),
		Assign:      pb.NewAssignServiceClient(conn),
		Queue:       pb.NewQueueServiceClient(conn),
		Performance: pb.NewPerformanceServiceClient(conn),
		Health:      healthpb.NewHealthClient(conn),
	}
}

// Close closes the connection.
func (c *Client) Close() error { return c.Conn.Close() }

// WaitReady polls grpc.health.v1 until the server reports SERVING for service ("" = the whole
// server), or ctx ends. It returns at once when the server refuses the caller (UNAUTHENTICATED,
// PERMISSION_DENIED).
func (c *Client) WaitReady(ctx context.Context, service string) error {
	delay := 20 * time.Millisecond
	var last interface{} = "no answer"
	for {
		callCtx, cancel := context.WithTimeout(ctx, time.Second)
		reply, err := c.Health.Check(callCtx, &healthpb.HealthCheckRequest{Service: service})
		cancel()
		if err == nil && reply.Status == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if code := status.Code(err); code == codes.Unauthenticated || code == codes.PermissionDenied {
			return err
		}
		if err != nil {
			last = err
		} else {
			last = reply.Status
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server not SERVING (last: %v): %w", last, ctx.Err())
		case <-time.After(delay):
		}
		if delay *= 2; delay > 500*time.Millisecond {
			delay = 500 * time.Millisecond
		}
	}
}

// GetAssignment returns the current assignment of a subtask.
func (c *Client) GetAssignment(ctx context.Context, subtaskID string) (*pb.Assignment, error) {
	reply, err := c.Assign.GetAssignment(ctx, &pb.GetAssignmentRequest{SubtaskId: subtaskID})
	if err != nil {
		return nil, err
	}
	return reply.Assignment, nil
}

// Wait polls GetAssignment with exponential backoff (50 ms doubling to 1 s, back to 50 ms after any
// change) until every subtask is COMPLETED, FAILED or CANCELLED, and returns the final assignments.
// onChange (may be nil) sees each change of state or holder. It stops with ctx.
func (c *Client) Wait(ctx context.Context, subtaskIDs []string, onChange func(*pb.Assignment)) (map[string]*pb.Assignment, error) {
	const initial, max = 50 * time.Millisecond, time.Second
	type key struct {
		state pb.AssignmentState
		who   string
		epoch uint64
	}
	seen := map[string]key{}
	final := map[string]*pb.Assignment{}
	delay := initial
	for {
		changed := false
		for _, id := range subtaskIDs {
			if _, done := final[id]; done {
				continue
			}
			a, err := c.GetAssignment(ctx, id)
			if err != nil {
				return final, err
			}
			k := key{a.State, a.SpecialistId, a.Epoch}
			if seen[id] != k {
				seen[id] = k
				changed = true
				if onChange != nil {
					onChange(a)
				}
			}
			if IsTerminal(a.State) {
				final[id] = a
			}
		}
		if len(final) == len(subtaskIDs) {
			return final, nil
		}
		if changed {
			delay = initial
		} else if delay *= 2; delay > max {
			delay = max
		}
		select {
		case <-ctx.Done():
			var pending []string
			for _, id := range subtaskIDs {
				if _, done := final[id]; !done {
					pending = append(pending, id)
				}
			}
			return final, fmt.Errorf("still not finished: %s: %w", strings.Join(pending, ", "), ctx.Err())
		case <-time.After(delay):
		}
	}
}

// IsTerminal reports whether a subtask in this state never changes again.
func IsTerminal(state pb.AssignmentState) bool {
	switch state {
	case pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED,
		pb.AssignmentState_ASSIGNMENT_STATE_FAILED,
		pb.AssignmentState_ASSIGNMENT_STATE_CANCELLED:
		return true
	}
	return false
}

// StateName is ASSIGNMENT_STATE_COMPLETED -> COMPLETED.
func StateName(state pb.AssignmentState) string {
	return strings.TrimPrefix(state.String(), "ASSIGNMENT_STATE_")
}

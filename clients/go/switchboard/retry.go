package switchboard

// Bounded retries of calls the server refused for now (RESOURCE_EXHAUSTED, UNAVAILABLE).
//
// The server says how long to wait in a google.rpc.RetryInfo detail (the Assign rate limit, the
// watch stream bound); without one the wait is an exponential backoff with jitter. Which calls are
// repeated on which code:
//
//   - RESOURCE_EXHAUSTED carrying RetryInfo: every unary call. The server refused before acting
//     and said when to come back.
//   - RESOURCE_EXHAUSTED without it, and UNAVAILABLE (which may come after the server acted, e.g.
//     a connection lost mid-call): only calls that are safe to repeat. Assign (the same subtask id
//     and content returns the existing assignment), Cancel, the reads, Heartbeat, ReportCompletion
//     (the same report again returns the recorded result) and a Register that quotes its
//     incarnation (it updates the same registration). Not a Register starting an incarnation,
//     Release or Deregister: their repeat after the first one applied is refused (the Agent
//     handles Release itself).
//
// The call's context deadline covers its retries: when the server's delay does not fit in what is
// left, the error is returned at once.

import (
	"context"
	"math/rand"
	"strings"
	"sync"
	"time"

	pb "github.com/switchboard-dev/switchboard/clients/go/switchboard/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// RetryPolicy says how often and how long to retry.
type RetryPolicy struct {
	// MaxRetries bounds the retries of one call: 0 means DefaultMaxRetries, negative none.
	MaxRetries int
	// Without the server's delay, retry n (from 0) waits a random time between half and all of
	// InitialBackoff * 2^n, capped at MaxBackoff. Defaults 100 ms and 5 s.
	InitialBackoff, MaxBackoff time.Duration
	// OnRetry (may be nil) is called before each wait, e.g. to log "rate limited, retrying in 1.5s".
	OnRetry func(method string, err error, delay time.Duration, retry int)
}

// DefaultMaxRetries is RetryPolicy.MaxRetries when left 0.
const DefaultMaxRetries = 5

// NoRetry turns retrying off.
var NoRetry = RetryPolicy{MaxRetries: -1}

const retryInfoType = "type.googleapis.com/google.rpc.RetryInfo"

var safeToRepeat = map[string]bool{
	"/switchboard.v1.AssignService/Assign":                true,
	"/switchboard.v1.AssignService/GetAssignment":         true,
	"/switchboard.v1.AssignService/Cancel":                true,
	"/switchboard.v1.QueueService/GetQueuePosition":       true,
	"/switchboard.v1.QueueService/ListQueue":              true,
	"/switchboard.v1.QueueService/GetQueueStats":          true,
	"/switchboard.v1.RegisterService/Heartbeat":           true,
	"/switchboard.v1.RegisterService/GetSpecialist":       true,
	"/switchboard.v1.RegisterService/ListSpecialists":     true,
	"/switchboard.v1.PerformanceService/ReportCompletion": true,
	"/switchboard.v1.PerformanceService/GetPerformance":   true,
	"/switchboard.v1.PerformanceService/GetModelStatus":   true,
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxRetries == 0 {
		p.MaxRetries = DefaultMaxRetries
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = 100 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 5 * time.Second
	}
	return p
}

// backoff is the wait before retry n (from 0) when the server gave none.
func (p RetryPolicy) backoff(retry int) time.Duration {
	ceiling := p.MaxBackoff
	if retry < 30 && p.InitialBackoff<<uint(retry) < ceiling {
		ceiling = p.InitialBackoff << uint(retry)
	}
	return time.Duration(float64(ceiling) * jitter(0.5, 1))
}

var (
	jitterMu   sync.Mutex
	jitterRand = rand.New(rand.NewSource(time.Now().UnixNano()))
)

func jitter(low, high float64) float64 {
	jitterMu.Lock()
	defer jitterMu.Unlock()
	return low + (high-low)*jitterRand.Float64()
}

// RetryDelay is the wait the server asked for in a google.rpc.RetryInfo detail of err's status,
// and whether it gave one.
func RetryDelay(err error) (time.Duration, bool) {
	if err == nil {
		return 0, false
	}
	// Read from the status proto by hand (RetryInfo is one Duration field), so this package needs
	// no googleapis error-details package.
	for _, detail := range status.Convert(err).Proto().GetDetails() {
		if detail.GetTypeUrl() != retryInfoType {
			continue
		}
		value := detail.GetValue()
		for len(value) > 0 {
			number, kind, n := protowire.ConsumeTag(value)
			if n < 0 {
				return 0, false
			}
			value = value[n:]
			if number == 1 && kind == protowire.BytesType {
				field, m := protowire.ConsumeBytes(value)
				if m < 0 {
					return 0, false
				}
				var delay durationpb.Duration
				if proto.Unmarshal(field, &delay) != nil {
					return 0, false
				}
				if d := delay.AsDuration(); d > 0 {
					return d, true
				}
				return 0, true
			}
			m := protowire.ConsumeFieldValue(number, kind, value)
			if m < 0 {
				return 0, false
			}
			value = value[m:]
		}
	}
	return 0, false
}

// mayRetry says whether method, answered err, may be sent again (see the top of this file).
func mayRetry(method string, req interface{}, err error, serverDelay bool) bool {
	code := status.Code(err)
	if code != codes.ResourceExhausted && code != codes.Unavailable {
		return false
	}
	if code == codes.ResourceExhausted && serverDelay {
		return true
	}
	if safeToRepeat[method] {
		return true
	}
	if register, ok := req.(*pb.RegisterRequest); ok && strings.HasSuffix(method, "/Register") {
		return register.GetIncarnation() != ""
	}
	return false
}

// retryInterceptor retries unary calls per policy; Connect installs it.
func retryInterceptor(policy RetryPolicy) grpc.UnaryClientInterceptor {
	policy = policy.withDefaults()
	return func(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		for retry := 0; ; retry++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err == nil || retry >= policy.MaxRetries {
				return err
			}
			serverDelay, given := RetryDelay(err)
			if !mayRetry(method, req, err, given) {
				return err
			}
			delay := policy.backoff(retry)
			if given {
				// A little over the server's wait, so the token it promised has surely come.
				delay = time.Duration(float64(serverDelay) * jitter(1.02, 1.1))
			}
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= delay {
				return err // the wait does not fit in the caller's deadline
			}
			if policy.OnRetry != nil {
				policy.OnRetry(method, err, delay, retry+1)
			}
			timer := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				timer.Stop()
				return err
			case <-timer.C:
			}
		}
	}
}

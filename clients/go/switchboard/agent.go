package switchboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/switchboard-dev/switchboard/clients/go/switchboard/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrAssignmentLost is returned (wrapped) by Complete and Release when the subtask is no longer the
// agent's at that epoch (cancelled, lease lapsed, reassigned): the server refused and changed nothing.
var ErrAssignmentLost = errors.New("assignment no longer held at this epoch")

// ErrStopped is returned by Next once the agent has stopped.
var ErrStopped = errors.New("agent stopped")

// ErrSuperseded is returned (wrapped, with the server's message) by Next, Run and Err once another
// process registered the specialist id, ending this agent's incarnation. The agent has stopped
// then: its held work was revoked (the server retries it with the new process) and it does not
// register again, so two processes do not keep taking the id from each other.
var ErrSuperseded = errors.New("superseded by another process")

// ErrAlreadyRegistered is matched (errors.Is) by the error of Start when another live process holds
// the specialist id. Set AgentConfig.TakeOver if this process replaces that one.
var ErrAlreadyRegistered = errors.New("specialist id held by another live process")

// AlreadyRegisteredError is Start's error when Register answered ALREADY_EXISTS. It matches
// ErrAlreadyRegistered, and status.Code(err) is codes.AlreadyExists.
type AlreadyRegisteredError struct {
	SpecialistID string
	Status       *status.Status
}

func (e *AlreadyRegisteredError) Error() string {
	return fmt.Sprintf("register: specialist %s is registered by another live process (%s); set TakeOver if this process replaces it, or use another SpecialistID",
		e.SpecialistID, e.Status.Message())
}

// Is makes errors.Is(err, ErrAlreadyRegistered) true.
func (e *AlreadyRegisteredError) Is(target error) bool { return target == ErrAlreadyRegistered }

// GRPCStatus lets status.Code and status.Convert see the server's answer.
func (e *AlreadyRegisteredError) GRPCStatus() *status.Status { return e.Status }

// callError names the call that failed while status.Code and status.Convert still see the
// server's answer (UNAUTHENTICATED without a valid token, PERMISSION_DENIED for another agent's id).
type callError struct {
	call string
	err  error
}

func (e *callError) Error() string { return e.call + ": " + e.err.Error() }

func (e *callError) Unwrap() error { return e.err }

// GRPCStatus lets status.Code and status.Convert see the server's answer.
func (e *callError) GRPCStatus() *status.Status { return status.Convert(e.err) }

// Work is one assignment handed to the agent.
type Work struct {
	Assignment *pb.Assignment
	Subtask    *pb.Subtask
	ReceivedAt time.Time

	revoked   chan struct{}
	once      sync.Once
	reason    atomic.Value // string
	finishing atomic.Bool
}

func newWork(a *pb.Assignment, s *pb.Subtask) *Work {
	return &Work{Assignment: a, Subtask: s, ReceivedAt: time.Now(), revoked: make(chan struct{})}
}

// ID is the subtask id.
func (w *Work) ID() string { return w.Assignment.SubtaskId }

// Epoch is the fencing token the reports quote.
func (w *Work) Epoch() uint64 { return w.Assignment.Epoch }

// Attempt is 1 on first hand-out, +1 after each lease expiry or release.
func (w *Work) Attempt() uint32 { return w.Assignment.Attempt }

// Payload is the orchestrator's opaque payload.
func (w *Work) Payload() []byte { return w.Subtask.Payload }

// DecodeJSON unmarshals the payload.
func (w *Work) DecodeJSON(v interface{}) error { return json.Unmarshal(w.Subtask.Payload, v) }

// Revoked is closed when the server takes the subtask away: stop working on it, do not report.
func (w *Work) Revoked() <-chan struct{} { return w.revoked }

// IsRevoked reports whether Revoked is closed.
func (w *Work) IsRevoked() bool {
	select {
	case <-w.revoked:
		return true
	default:
		return false
	}
}

// RevokedReason says why, once revoked.
func (w *Work) RevokedReason() string {
	s, _ := w.reason.Load().(string)
	return s
}

func (w *Work) revoke(reason string) bool {
	first := false
	w.once.Do(func() {
		w.reason.Store(reason)
		close(w.revoked)
		first = true
	})
	return first
}

// AgentConfig describes the specialist.
type AgentConfig struct {
	// SpecialistID "" lets the server mint one (read it with Agent.ID after Start). With auth on,
	// the Client's token must be an agent token for this id (or an admin's).
	SpecialistID   string
	Type           string
	Capabilities   []string
	MaxConcurrency uint32 // 0: the server's default (5)
	Labels         map[string]string
	// OnRevoked is called (from the stream goroutine) when work is taken away.
	OnRevoked func(*Work)
	// Reconnect backoff of the assignment stream; defaults 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration
	// RPCTimeout bounds each unary call; default 10 s.
	RPCTimeout time.Duration
	// Logf logs (default log.Printf); set to func(string, ...interface{}) {} for silence.
	Logf func(format string, args ...interface{})
	// TakeOver lets the first Register replace another live process with the same SpecialistID
	// (whose in-flight work is then retried); without it Start fails with ErrAlreadyRegistered.
	TakeOver bool
}

// Agent is a specialist: it registers, heartbeats at the server-given interval, streams its
// assignments from WatchAssignments (reopening the stream whenever it drops: the server replays
// in-flight work and the agent hands out only what it has not handed out before), and reports.
// Register starts an incarnation (this process's session with the id) that every later call
// carries; when another process takes the id over, the agent stops with ErrSuperseded.
type Agent struct {
	c   *Client
	cfg AgentConfig

	mu          sync.Mutex
	id          string
	incarnation string // from Register; "" until registered
	superseded  error  // wraps ErrSuperseded once another process took the id over
	generation  int    // bumped by each successful register
	heartbeat   time.Duration
	leaseTTL    time.Duration
	held        map[string]*Work
	cancelCall  context.CancelFunc
	reconnect   bool
	// regMu is held while registering, so an "incarnation ended" answer is judged against the
	// incarnation the agent has once that Register returned (a call may race our re-registration).
	regMu sync.Mutex

	queue      chan *Work
	ctx        context.Context
	stop       context.CancelFunc
	wg         sync.WaitGroup
	connected  atomic.Bool
	reconnects atomic.Int64
}

// NewAgent prepares an agent; Start registers it.
func NewAgent(c *Client, cfg AgentConfig) *Agent {
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = 100 * time.Millisecond
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = 5 * time.Second
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = 10 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	return &Agent{
		c: c, cfg: cfg, id: cfg.SpecialistID, heartbeat: 5 * time.Second, leaseTTL: 15 * time.Second,
		held: map[string]*Work{}, queue: make(chan *Work, 1024),
	}
}

// ID is the specialist id (the server's if it minted one).
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

// Incarnation is this process's session with the id, from Register ("" before Start).
func (a *Agent) Incarnation() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.incarnation
}

// Err is nil, or an error wrapping ErrSuperseded once another process took the id over (the agent
// has stopped then).
func (a *Agent) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.superseded
}

// HeartbeatInterval is the interval the server asked for.
func (a *Agent) HeartbeatInterval() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.heartbeat
}

// Reconnects counts how often the assignment stream was reopened.
func (a *Agent) Reconnects() int64 { return a.reconnects.Load() }

// Connected reports whether the assignment stream is open.
func (a *Agent) Connected() bool { return a.connected.Load() }

// Start registers (with TakeOver if set), then heartbeats and watches in goroutines until Stop, ctx
// ends, or another process takes the id over. Its error matches ErrAlreadyRegistered while another
// live process holds the id; otherwise status.Code(err) is the server's answer (UNAUTHENTICATED
// without a valid token, PERMISSION_DENIED when the token does not cover the id).
func (a *Agent) Start(ctx context.Context) error {
	a.regMu.Lock()
	err := a.register(ctx, "", a.cfg.TakeOver)
	a.regMu.Unlock()
	if err != nil {
		return err
	}
	a.ctx, a.stop = context.WithCancel(ctx)
	a.wg.Add(2)
	go a.heartbeatLoop()
	go a.watchLoop()
	return nil
}

// register quotes incarnation ("" starts a new one, replacing a live one with takeOver). The caller
// holds regMu.
func (a *Agent) register(ctx context.Context, incarnation string, takeOver bool) error {
	a.mu.Lock()
	req := &pb.RegisterRequest{
		SpecialistId: a.id, SpecialistType: a.cfg.Type, Capabilities: a.cfg.Capabilities,
		MaxConcurrency: a.cfg.MaxConcurrency, Labels: a.cfg.Labels,
		Availability: pb.Availability_AVAILABILITY_ONLINE,
		Incarnation:  incarnation, TakeOver: takeOver,
	}
	a.mu.Unlock()
	callCtx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
	defer cancel()
	reply, err := a.c.Register.Register(callCtx, req)
	if status.Code(err) == codes.AlreadyExists {
		return &AlreadyRegisteredError{SpecialistID: req.SpecialistId, Status: status.Convert(err)}
	}
	if err != nil {
		return &callError{call: "register", err: err}
	}
	a.mu.Lock()
	a.id = reply.Specialist.SpecialistId
	a.incarnation = reply.Incarnation
	a.generation++
	if reply.HeartbeatIntervalMs > 0 {
		a.heartbeat = time.Duration(reply.HeartbeatIntervalMs) * time.Millisecond
	}
	if reply.LeaseTtlMs > 0 {
		a.leaseTTL = time.Duration(reply.LeaseTtlMs) * time.Millisecond
	}
	a.mu.Unlock()
	a.cfg.Logf("switchboard: registered %s (%s), incarnation %s, heartbeat every %v",
		a.ID(), a.cfg.Type, a.Incarnation(), a.HeartbeatInterval())
	return nil
}

// Stop ends heartbeats and the stream; with deregister the server requeues the work still held.
// A superseded agent does not deregister: the id belongs to the process that took it over.
func (a *Agent) Stop(deregister bool) {
	if a.stop == nil {
		return
	}
	a.stop()
	a.wg.Wait()
	if deregister && a.Err() != nil {
		a.cfg.Logf("switchboard: not deregistering %s: another process holds the id now", a.ID())
		return
	}
	if deregister {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.RPCTimeout)
		defer cancel()
		if _, err := a.c.Register.Deregister(ctx, &pb.DeregisterRequest{SpecialistId: a.ID()}); err != nil {
			a.cfg.Logf("switchboard: deregister %s: %v", a.ID(), err)
		}
	}
}

// Reconnect drops the assignment stream and opens a new one; nothing is lost (the server replays).
func (a *Agent) Reconnect() {
	a.mu.Lock()
	a.reconnect = true
	cancel := a.cancelCall
	a.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Next returns the next assignment not handed out before. It returns ErrStopped once the agent
// stops, an error wrapping ErrSuperseded once another process took the id over, or ctx's error.
func (a *Agent) Next(ctx context.Context) (*Work, error) {
	for {
		if err := a.Err(); err != nil {
			return nil, err
		}
		select {
		case w := <-a.queue:
			if !w.IsRevoked() {
				return w, nil
			}
		case <-a.ctx.Done():
			if err := a.Err(); err != nil {
				return nil, err
			}
			return nil, ErrStopped
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Held lists work handed out (or waiting to be) and not yet reported.
func (a *Agent) Held() []*Work {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*Work, 0, len(a.held))
	for _, w := range a.held {
		out = append(out, w)
	}
	return out
}

// Complete reports how the work went, quoting its epoch. quality is 0..1. A failure makes the
// subtask FAILED and fails its dependents. The completion time is the time since the work arrived.
// Errors wrap ErrAssignmentLost when the subtask is no longer ours.
func (a *Agent) Complete(ctx context.Context, w *Work, success bool, quality float64, detail string) (*pb.Assignment, error) {
	req := &pb.ReportCompletionRequest{
		SubtaskId: w.ID(), SpecialistId: a.ID(), Epoch: w.Epoch(), Success: success,
		CompletionTimeMs: uint64(time.Since(w.ReceivedAt).Milliseconds()), QualityScore: quality, Detail: detail,
		Incarnation: a.Incarnation(),
	}
	return a.finish(ctx, w, false, func(ctx context.Context) (*pb.Assignment, error) {
		reply, err := a.c.Performance.ReportCompletion(ctx, req)
		if err != nil {
			return nil, err
		}
		return reply.Assignment, nil
	})
}

// Release hands the work back: it is requeued and not offered to this agent again.
func (a *Agent) Release(ctx context.Context, w *Work, reason string) (*pb.Assignment, error) {
	req := &pb.ReleaseRequest{
		SubtaskId: w.ID(), SpecialistId: a.ID(), Epoch: w.Epoch(), Reason: reason, Incarnation: a.Incarnation(),
	}
	return a.finish(ctx, w, true, func(ctx context.Context) (*pb.Assignment, error) {
		reply, err := a.c.Assign.Release(ctx, req)
		if err != nil {
			return nil, err
		}
		return reply.Assignment, nil
	})
}

// finish runs a report, repeating it on UNAVAILABLE / DEADLINE_EXCEEDED for up to one lease
// length. A repeated ReportCompletion returns the recorded result. A repeated Release is refused
// with FAILED_PRECONDITION once an earlier attempt applied; the subtask is not ours any more either
// way, so that counts as released (the assignment returned is then the current one).
func (a *Agent) finish(ctx context.Context, w *Work, released bool, call func(context.Context) (*pb.Assignment, error)) (*pb.Assignment, error) {
	w.finishing.Store(true)
	a.mu.Lock()
	deadline := time.Now().Add(a.leaseTTL)
	a.mu.Unlock()
	delay := 100 * time.Millisecond
	repeated := false
	for {
		callCtx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
		assignment, err := call(callCtx)
		cancel()
		if err == nil {
			a.forget(w)
			return assignment, nil
		}
		code := status.Code(err)
		if code == codes.FailedPrecondition && released && repeated {
			a.forget(w)
			a.cfg.Logf("switchboard: release of %s: an earlier attempt applied (%s)", w.ID(), status.Convert(err).Message())
			return a.current(ctx, w), nil
		}
		if code == codes.FailedPrecondition {
			a.forget(w)
			w.revoke(status.Convert(err).Message())
			return nil, fmt.Errorf("%s (epoch %d): %w: %s", w.ID(), w.Epoch(), ErrAssignmentLost, status.Convert(err).Message())
		}
		if (code == codes.Unavailable || code == codes.DeadlineExceeded) && time.Now().Add(delay).Before(deadline) && ctx.Err() == nil {
			a.cfg.Logf("switchboard: report of %s: %v; retrying in %v", w.ID(), code, delay)
			time.Sleep(delay)
			if delay *= 2; delay > 2*time.Second {
				delay = 2 * time.Second
			}
			repeated = true
			continue
		}
		w.finishing.Store(false)
		return nil, err
	}
}

// current is the subtask's assignment now, or just its id when the server cannot say.
func (a *Agent) current(ctx context.Context, w *Work) *pb.Assignment {
	callCtx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
	defer cancel()
	assignment, err := a.c.GetAssignment(callCtx, w.ID())
	if err != nil {
		return &pb.Assignment{SubtaskId: w.ID()}
	}
	return assignment
}

func (a *Agent) forget(w *Work) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.held[w.ID()] == w {
		delete(a.held, w.ID())
	}
}

// Result is what a Handler reports on success.
type Result struct {
	Quality float64 // 0..1
	Detail  string
}

// Handler does one piece of work. Its ctx is cancelled when the work is revoked or Run's ctx ends.
// A nil error reports success with the Result; an error reports failure (quality 0, the error's
// text as detail). Revoked work is not reported, nor an error after Run's ctx ended (shutdown).
type Handler func(ctx context.Context, w *Work) (Result, error)

// Run starts the agent if needed and calls handler for each assignment, up to workers at a time,
// until ctx ends, the agent stops, or maxTasks (0 = no limit) were handled. It returns how many,
// and an error wrapping ErrSuperseded if another process took the id over.
func (a *Agent) Run(ctx context.Context, handler Handler, workers, maxTasks int) (int, error) {
	if a.stop == nil {
		if err := a.Start(ctx); err != nil {
			return 0, err
		}
	}
	if workers < 1 {
		workers = 1
	}
	slots := make(chan struct{}, workers)
	var wg sync.WaitGroup
	var handled atomic.Int64
	taken := 0
	var err error
	for maxTasks == 0 || taken < maxTasks {
		slots <- struct{}{}
		var w *Work
		w, err = a.Next(ctx)
		if err != nil {
			<-slots
			break
		}
		taken++
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			a.handle(ctx, handler, w)
			handled.Add(1)
		}()
	}
	wg.Wait()
	if errors.Is(err, ErrStopped) || errors.Is(err, context.Canceled) {
		err = nil
	}
	return int(handled.Load()), err
}

func (a *Agent) handle(ctx context.Context, handler Handler, w *Work) {
	workCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.Revoked():
			cancel()
		case <-workCtx.Done():
		}
	}()
	result, herr := handler(workCtx, w)
	if w.IsRevoked() {
		a.cfg.Logf("switchboard: %s was revoked (%s); not reporting", w.ID(), w.RevokedReason())
		return
	}
	if herr != nil && ctx.Err() != nil {
		// Interrupted because Run's ctx ended (shutting down), not a failure of the work: leave it
		// held; Stop(true) hands it back to the queue, or the lease lapses.
		a.cfg.Logf("switchboard: %s interrupted by shutdown; not reporting", w.ID())
		return
	}
	reportCtx := context.Background() // report even if ctx ended meanwhile: the work is done
	var err error
	if herr != nil {
		_, err = a.Complete(reportCtx, w, false, 0, herr.Error())
	} else {
		_, err = a.Complete(reportCtx, w, true, result.Quality, result.Detail)
	}
	if err != nil {
		a.cfg.Logf("switchboard: report of %s: %v", w.ID(), err)
	}
}

func (a *Agent) heartbeatLoop() {
	defer a.wg.Done()
	interval := a.HeartbeatInterval()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(interval):
		}
		interval = a.HeartbeatInterval()
		a.mu.Lock()
		generation, id, incarnation := a.generation, a.id, a.incarnation
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(a.ctx, 2*interval)
		_, err := a.c.Register.Heartbeat(ctx, &pb.HeartbeatRequest{SpecialistId: id, Incarnation: incarnation})
		cancel()
		if err == nil || a.ctx.Err() != nil {
			continue
		}
		switch status.Code(err) {
		case codes.NotFound:
			a.lostRegistration("heartbeat: unknown specialist", generation)
			continue
		case codes.FailedPrecondition:
			if a.supersede(incarnation, status.Convert(err).Message()) {
				return
			}
			interval = 0 // our own re-registration raced this heartbeat: renew at once
			continue
		}
		a.cfg.Logf("switchboard: heartbeat: %v", err)
		if interval > time.Second {
			interval = time.Second // try again sooner
		}
	}
}

// lostRegistration: the server no longer knows us (deregistered, or it restarted), so all held work
// is gone; register again, as a new incarnation without TakeOver: if another process holds the id
// by then, it is theirs and this agent is superseded. Stale news (another goroutine re-registered
// since) is ignored.
func (a *Agent) lostRegistration(why string, generation int) {
	a.regMu.Lock()
	a.mu.Lock()
	if generation != a.generation || a.superseded != nil {
		a.mu.Unlock()
		a.regMu.Unlock()
		return
	}
	lost := a.takeHeld()
	oldIncarnation := a.incarnation
	a.mu.Unlock()
	a.cfg.Logf("switchboard: %s: %s; registering again", a.ID(), why)
	for _, w := range lost {
		a.revoked(w, "specialist was deregistered")
	}
	err := a.register(a.ctx, "", false)
	a.regMu.Unlock()
	var taken *AlreadyRegisteredError
	if errors.As(err, &taken) {
		a.supersede(oldIncarnation, taken.Status.Message())
		return
	}
	if err != nil {
		a.cfg.Logf("switchboard: %v", err)
	}
	a.Reconnect()
}

// takeHeld empties held and returns what it had. The caller holds mu.
func (a *Agent) takeHeld() []*Work {
	lost := make([]*Work, 0, len(a.held))
	for _, w := range a.held {
		lost = append(lost, w)
	}
	a.held = map[string]*Work{}
	return lost
}

// supersede handles a call quoting incarnation that was refused because the incarnation ended:
// another process has the id. It stops the agent for good (no re-registering: the two processes
// would keep taking the id from each other) and revokes the held work, which the server retries
// with the new process. It reports whether the agent is superseded: news about an incarnation the
// agent no longer has (its own re-registration raced the call) is ignored.
func (a *Agent) supersede(incarnation, detail string) bool {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	a.mu.Lock()
	if a.superseded != nil {
		a.mu.Unlock()
		return true
	}
	if incarnation != a.incarnation {
		a.mu.Unlock()
		return false
	}
	if detail == "" {
		detail = "incarnation " + incarnation + " has ended"
	}
	a.superseded = fmt.Errorf("specialist %s: %w (%s); stopped without registering again", a.id, ErrSuperseded, detail)
	lost := a.takeHeld()
	err := a.superseded
	a.mu.Unlock()
	a.cfg.Logf("switchboard: %v; %d held subtask(s) are no longer ours", err, len(lost))
	a.stop()
	for _, w := range lost {
		a.revoked(w, "superseded: another process registered the id")
	}
	return true
}

func (a *Agent) watchLoop() {
	defer a.wg.Done()
	delay := a.cfg.ReconnectMin
	first := true
	for a.ctx.Err() == nil {
		callCtx, cancel := context.WithCancel(a.ctx)
		a.mu.Lock()
		a.cancelCall = cancel
		a.reconnect = false
		generation, id, incarnation := a.generation, a.id, a.incarnation
		a.mu.Unlock()

		err := a.watchOnce(callCtx, id, incarnation, &first, &delay)
		cancel()
		a.connected.Store(false)
		if a.ctx.Err() != nil {
			return
		}
		a.mu.Lock()
		requested := a.reconnect
		a.mu.Unlock()
		code := status.Code(err)
		switch {
		case err == nil:
			a.cfg.Logf("switchboard: assignment stream ended; reopening")
			continue
		case requested && (code == codes.Canceled || errors.Is(err, context.Canceled)):
			continue
		case code == codes.NotFound:
			a.lostRegistration("watch: "+status.Convert(err).Message(), generation)
			a.mu.Lock()
			registered := a.generation != generation
			a.mu.Unlock()
			if a.ctx.Err() != nil {
				return // superseded
			}
			if registered {
				continue // registered again: reopen at once
			}
		case code == codes.FailedPrecondition:
			if a.supersede(incarnation, status.Convert(err).Message()) {
				return
			}
			continue // our own re-registration raced this call: reopen with the new incarnation
		}
		wait := delay
		if server, ok := RetryDelay(err); ok && server > wait {
			wait = server // e.g. the watch stream bound's RetryInfo
		}
		a.cfg.Logf("switchboard: assignment stream: %v; reconnecting in %v", err, wait)
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(wait):
		}
		if delay *= 2; delay > a.cfg.ReconnectMax {
			delay = a.cfg.ReconnectMax
		}
	}
}

// watchOnce runs one stream until it ends; nil error means the server ended it cleanly.
func (a *Agent) watchOnce(ctx context.Context, id, incarnation string, first *bool, delay *time.Duration) error {
	stream, err := a.c.Assign.WatchAssignments(ctx, &pb.WatchAssignmentsRequest{SpecialistId: id, Incarnation: incarnation})
	if err != nil {
		return err
	}
	// Header returns once the server answered; a refusal (NOT_FOUND) comes without headers.
	if md, err := stream.Header(); err == nil && len(md) > 0 {
		a.opened(first, delay)
	}
	for {
		event, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if !a.connected.Load() {
			a.opened(first, delay)
		}
		a.onEvent(event)
	}
}

func (a *Agent) opened(first *bool, delay *time.Duration) {
	if a.connected.Swap(true) {
		return
	}
	if !*first {
		a.reconnects.Add(1)
		a.reconcile()
	}
	*first = false
	*delay = a.cfg.ReconnectMin
}

// reconcile runs after a reconnect: held work whose REVOKED event was missed is no longer ours.
func (a *Agent) reconcile() {
	for _, w := range a.Held() {
		if w.finishing.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, a.cfg.RPCTimeout)
		assignment, err := a.c.GetAssignment(ctx, w.ID())
		cancel()
		if status.Code(err) == codes.NotFound { // the server forgot it (e.g. it restarted)
			a.forget(w)
			a.revoked(w, "unknown to the server")
			continue
		}
		if err != nil {
			a.cfg.Logf("switchboard: checking %s after reconnect: %v", w.ID(), err)
			continue
		}
		if assignment.State != pb.AssignmentState_ASSIGNMENT_STATE_ASSIGNED ||
			assignment.SpecialistId != a.ID() || assignment.Epoch != w.Epoch() {
			a.forget(w)
			a.revoked(w, "taken away while disconnected")
		}
	}
}

func (a *Agent) onEvent(event *pb.WatchAssignmentsResponse) {
	assignment := event.Assignment
	if assignment == nil {
		return
	}
	id := assignment.SubtaskId
	switch event.Kind {
	case pb.WatchEventKind_WATCH_EVENT_KIND_ASSIGNED:
		a.mu.Lock()
		current := a.held[id]
		if current != nil && current.Epoch() == assignment.Epoch {
			a.mu.Unlock()
			return // replayed after a reconnect: already handed out
		}
		w := newWork(assignment, event.Subtask)
		a.held[id] = w
		a.mu.Unlock()
		if current != nil {
			a.revoked(current, fmt.Sprintf("reassigned with epoch %d", assignment.Epoch))
		}
		select {
		case a.queue <- w:
		case <-a.ctx.Done():
		}
	case pb.WatchEventKind_WATCH_EVENT_KIND_REVOKED:
		a.mu.Lock()
		current := a.held[id]
		if current == nil || (assignment.Epoch != 0 && current.Epoch() != assignment.Epoch) {
			a.mu.Unlock()
			return
		}
		delete(a.held, id)
		a.mu.Unlock()
		reason := assignment.Detail
		if reason == "" {
			reason = "revoked"
		}
		a.revoked(current, reason)
	}
}

func (a *Agent) revoked(w *Work, reason string) {
	if w.revoke(reason) && a.cfg.OnRevoked != nil {
		a.cfg.OnRevoked(w)
	}
}

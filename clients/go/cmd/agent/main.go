// Command agent is an example specialist: it registers with Switchboard and works through whatever
// it is assigned.
//
//	go run ./cmd/agent -address localhost:50051 -type backend -capabilities sql,grpc
//
// Each subtask's payload is JSON such as {"title": "...", "work_ms": 200}; the "work" is a wait of
// that long (default -work-ms). A payload with "fail": true is reported as a failure. It stops on
// SIGINT/SIGTERM (deregistering, so the server requeues anything unfinished) or after -max-tasks.
//
// Only one live process may hold a specialist id: a second one with the same -id exits 1 unless it
// passes -take-over (for a replacement, e.g. a restart under a supervisor), which supersedes the
// first; the first then exits 3 (its unfinished work is retried by the server), without deregistering.
//
// With auth on, pass the agent's token (switchboard token issue --role agent --specialist ID) as
// -token or SWITCHBOARD_TOKEN, and with TLS the CA that signed the server's certificate as -tls-ca
// (and a client certificate as -tls-cert/-tls-key for mutual TLS); a refused token exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-dev/switchboard/clients/go/switchboard"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func main() {
	address := flag.String("address", "localhost:50051", "Switchboard gRPC address")
	kind := flag.String("type", "", "specialist type, e.g. frontend (required)")
	capabilities := flag.String("capabilities", "", "comma-separated, e.g. react,css")
	id := flag.String("id", "", "specialist id (default: the server mints one)")
	maxConcurrency := flag.Uint("max-concurrency", 2, "subtasks at a time")
	workMs := flag.Int("work-ms", 100, "simulated work per subtask")
	maxTasks := flag.Int("max-tasks", 0, "exit after this many (0: run until signalled)")
	takeOver := flag.Bool("take-over", false,
		"replace a live process registered with the same -id (its work is retried); without it this agent exits 1 while that process lives")
	connection := connectionFlags()
	flag.Parse()
	if *kind == "" {
		fmt.Fprintln(os.Stderr, "agent: -type is required")
		os.Exit(2)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	client, err := switchboard.Connect(*address, *connection)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ready, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := client.WaitReady(ready, ""); err != nil {
		if reason := refused(err); reason != "" {
			fmt.Fprintln(os.Stderr, "agent: "+reason)
			os.Exit(1)
		}
		log.Fatal(err)
	}

	var caps []string
	for _, c := range strings.Split(*capabilities, ",") {
		if c != "" {
			caps = append(caps, c)
		}
	}
	agent := switchboard.NewAgent(client, switchboard.AgentConfig{
		SpecialistID: *id, Type: *kind, Capabilities: caps, MaxConcurrency: uint32(*maxConcurrency),
		Labels: map[string]string{"example": "go-agent"}, TakeOver: *takeOver,
	})
	// Start with a background context: the signal ends Run, then Stop deregisters.
	if err := agent.Start(context.Background()); err != nil {
		if errors.Is(err, switchboard.ErrAlreadyRegistered) {
			fmt.Fprintf(os.Stderr, "agent: %s is held by another live process (%s); pass -take-over if this process replaces it\n",
				*id, status.Convert(err).Message())
			os.Exit(1)
		}
		if reason := refused(err); reason != "" {
			fmt.Fprintln(os.Stderr, "agent: "+reason)
			os.Exit(1)
		}
		log.Fatal(err)
	}
	fmt.Printf("agent %s (%s) ready\n", agent.ID(), *kind)

	work := func(ctx context.Context, w *switchboard.Work) (switchboard.Result, error) {
		var spec struct {
			Title  string `json:"title"`
			WorkMs *int   `json:"work_ms"`
			Fail   bool   `json:"fail"`
		}
		if len(w.Payload()) > 0 {
			if err := w.DecodeJSON(&spec); err != nil {
				return switchboard.Result{}, fmt.Errorf("payload: %w", err)
			}
		}
		if spec.Title == "" {
			spec.Title = w.ID()
		}
		fmt.Printf("%s: working on %s (%s), attempt %d\n", agent.ID(), w.ID(), spec.Title, w.Attempt())
		d := time.Duration(*workMs) * time.Millisecond
		if spec.WorkMs != nil {
			d = time.Duration(*spec.WorkMs) * time.Millisecond
		}
		// Simulated work; ctx ends if the subtask is revoked (or the agent stops).
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return switchboard.Result{}, ctx.Err()
		}
		if spec.Fail {
			return switchboard.Result{}, errors.New("payload asked to fail")
		}
		fmt.Printf("%s: done %s (epoch %d)\n", agent.ID(), w.ID(), w.Epoch())
		return switchboard.Result{Quality: 0.9, Detail: spec.Title + ": done"}, nil
	}

	handled, err := agent.Run(ctx, work, int(*maxConcurrency), *maxTasks)
	agent.Stop(true) // a superseded agent does not deregister: the id is the other process's now
	if errors.Is(err, switchboard.ErrSuperseded) {
		fmt.Fprintf(os.Stderr, "agent %s: %v\n", agent.ID(), err)
		os.Exit(3)
	}
	fmt.Printf("agent %s handled %d subtasks\n", agent.ID(), handled)
	if err != nil {
		log.Fatal(err)
	}
}

// connectionFlags defines -token, -tls-ca, -tls-cert, -tls-key, -tls-server-name and -caller-id,
// each defaulting to its SWITCHBOARD_* environment variable.
func connectionFlags() *switchboard.Config {
	cfg := &switchboard.Config{}
	for _, f := range []struct {
		value            *string
		name, env, usage string
	}{
		{&cfg.Token, "token", "SWITCHBOARD_TOKEN", "bearer token (switchboard token issue)"},
		{&cfg.TLSCA, "tls-ca", "SWITCHBOARD_TLS_CA", "PEM file of the CA that signed the server's certificate; turns TLS on"},
		{&cfg.TLSCert, "tls-cert", "SWITCHBOARD_TLS_CERT", "client certificate (PEM file) for mutual TLS"},
		{&cfg.TLSKey, "tls-key", "SWITCHBOARD_TLS_KEY", "private key (PEM file) of -tls-cert"},
		{&cfg.TLSServerName, "tls-server-name", "SWITCHBOARD_TLS_SERVER_NAME", "name to check in the server's certificate"},
		{&cfg.CallerID, "caller-id", "SWITCHBOARD_CALLER_ID", "x-caller-id: this caller's name for limits when auth is off"},
	} {
		flag.StringVar(f.value, f.name, os.Getenv(f.env), f.usage+" [env "+f.env+"]")
	}
	return cfg
}

// refused explains in one line a call the server refused for who the caller is ("" otherwise).
func refused(err error) string {
	switch status.Code(err) {
	case codes.Unauthenticated:
		return fmt.Sprintf("not authenticated (%s): pass -token or set SWITCHBOARD_TOKEN", status.Convert(err).Message())
	case codes.PermissionDenied:
		return fmt.Sprintf("not allowed (%s): the token does not cover this", status.Convert(err).Message())
	}
	return ""
}

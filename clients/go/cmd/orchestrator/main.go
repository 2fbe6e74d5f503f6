// Command orchestrator is an example orchestrator: it splits a feature into subtasks with
// dependencies, submits them all, and waits until they finish.
//
//	go run ./cmd/orchestrator -address localhost:50051
//
// The plan (one run = one parent id, so runs never collide):
//
//	schema (backend: sql) -> api (backend: grpc) -> form (frontend: react) -> e2e (testing: playwright)
//	                                             \-> docs (docs: markdown)      (e2e also needs api)
//
// Subtasks with unfinished dependencies are BLOCKED; Switchboard routes each one the moment its
// last dependency completes. It polls GetAssignment with backoff and exits 0 when every subtask
// COMPLETED, 1 if any FAILED or was CANCELLED or a submission was refused, 2 on -timeout. Start
// agents for the four types first (cmd/agent -type backend -capabilities sql,grpc; frontend/react;
// testing/playwright; docs/markdown).
//
// A submission the server rate-limits (RESOURCE_EXHAUSTED, the Assign limit per caller) is retried
// after the delay the server gives, so a big plan (-copies N: N times the five steps) goes in
// whole, only slower. With auth on, pass an orchestrator token as -token or SWITCHBOARD_TOKEN; TLS
// flags as for cmd/agent.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/clients/go/switchboard"
	pb "github.com/switchboard-dev/switchboard/clients/go/switchboard/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type step struct {
	name, kind   string
	capabilities []string
	dependsOn    []string
}

var plan = []step{
	{"schema", "backend", []string{"sql"}, nil},
	{"api", "backend", []string{"grpc"}, []string{"schema"}},
	{"form", "frontend", []string{"react"}, []string{"api"}},
	{"e2e", "testing", []string{"playwright"}, []string{"api", "form"}},
	{"docs", "docs", []string{"markdown"}, []string{"api"}},
}

func main() {
	address := flag.String("address", "localhost:50051", "Switchboard gRPC address")
	runID := flag.String("run-id", "", "parent id and subtask id prefix (default: random)")
	workMs := flag.Int("work-ms", 100, "how long each subtask asks its agent to work")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long to wait for the plan")
	copies := flag.Int("copies", 1, "submit the plan this many times (ids <run-id>-<n>-<step>)")
	connection := connectionFlags()
	flag.Parse()
	os.Exit(run(*address, *connection, *runID, *workMs, *copies, *timeout))
}

func run(address string, cfg switchboard.Config, runID string, workMs, copies int, timeout time.Duration) int {
	if runID == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		runID = "signup-" + hex.EncodeToString(b)
	}
	// e.g. the Assign rate limit: the server's RetryInfo says how long until the next token
	cfg.Retry.OnRetry = func(method string, err error, delay time.Duration, retry int) {
		fmt.Printf("%s: %s; retry %d in %.2fs\n", path.Base(method), codeName(err), retry, delay.Seconds())
	}
	client, err := switchboard.Connect(address, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := client.WaitReady(ctx, ""); err != nil {
		if reason := refused(err); reason != "" {
			fmt.Fprintln(os.Stderr, "orchestrator: "+reason)
			return 1
		}
		log.Fatal(err)
	}

	started := time.Now()
	var ids []string
	for copy := 1; copy <= copies; copy++ {
		prefix := runID
		if copies > 1 {
			prefix = fmt.Sprintf("%s-%d", runID, copy)
		}
		for _, s := range plan { // dependencies first: an unknown dependency is FAILED_PRECONDITION
			id := prefix + "-" + s.name
			var deps []string
			for _, d := range s.dependsOn {
				deps = append(deps, prefix+"-"+d)
			}
			payload, _ := json.Marshal(map[string]interface{}{"title": s.name + " for " + prefix, "work_ms": workMs})
			reply, err := client.Assign.Assign(ctx, &pb.AssignRequest{
				SubtaskId: id, SpecialistType: s.kind, RequiredCapabilities: s.capabilities,
				ParentId: runID, DependsOn: deps, Payload: payload,
			})
			if err != nil {
				reason := refused(err)
				if reason == "" {
					reason = err.Error()
				}
				fmt.Fprintf(os.Stderr, "orchestrator: submitting %s: %s\n", id, reason)
				return 1
			}
			ids = append(ids, id)
			fmt.Printf("submitted %-24s %s\n", id, switchboard.StateName(reply.Assignment.State))
		}
	}

	final, err := client.Wait(ctx, ids, func(a *pb.Assignment) {
		holder := ""
		if a.SpecialistId != "" {
			holder = " -> " + a.SpecialistId
		}
		fmt.Printf("  %-24s %s%s\n", a.SubtaskId, switchboard.StateName(a.State), holder)
	})
	if err != nil {
		fmt.Printf("timed out: %v\n", err)
		return 2
	}
	failed := 0
	for _, id := range ids {
		a := final[id]
		by := a.SpecialistId
		if by == "" {
			by = "-"
		}
		fmt.Printf("%-24s %-10s by %s %s\n", id, switchboard.StateName(a.State), by, a.Detail)
		if a.State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED {
			failed++
		}
	}
	if failed > 0 {
		fmt.Printf("plan %s: %d of %d subtasks did not complete\n", runID, failed, len(ids))
		return 1
	}
	fmt.Printf("plan %s: all %d subtasks completed in %.2fs\n", runID, len(ids), time.Since(started).Seconds())
	return 0
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

// codeName is the status code's name as the protocol spells it (RESOURCE_EXHAUSTED).
func codeName(err error) string {
	name := status.Code(err).String() // ResourceExhausted
	var out strings.Builder
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			out.WriteByte('_')
		}
		out.WriteRune(r)
	}
	return strings.ToUpper(out.String())
}

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
// COMPLETED, 1 if any FAILED or was CANCELLED, 2 on -timeout. Start agents for the four types first
// (cmd/agent -type backend -capabilities sql,grpc; frontend/react; testing/playwright; docs/markdown).
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
	"time"

	"github.com/switchboard-dev/switchboard/clients/go/switchboard"
	pb "github.com/switchboard-dev/switchboard/clients/go/switchboard/v1"
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
	flag.Parse()
	os.Exit(run(*address, *runID, *workMs, *timeout))
}

func run(address, runID string, workMs int, timeout time.Duration) int {
	if runID == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		runID = "signup-" + hex.EncodeToString(b)
	}
	client, err := switchboard.Dial(address)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := client.WaitReady(ctx, ""); err != nil {
		log.Fatal(err)
	}

	started := time.Now()
	var ids []string
	for _, s := range plan { // dependencies first: an unknown dependency is FAILED_PRECONDITION
		id := runID + "-" + s.name
		var deps []string
		for _, d := range s.dependsOn {
			deps = append(deps, runID+"-"+d)
		}
		payload, _ := json.Marshal(map[string]interface{}{"title": s.name + " for " + runID, "work_ms": workMs})
		reply, err := client.Assign.Assign(ctx, &pb.AssignRequest{
			SubtaskId: id, SpecialistType: s.kind, RequiredCapabilities: s.capabilities,
			ParentId: runID, DependsOn: deps, Payload: payload,
		})
		if err != nil {
			log.Fatalf("assign %s: %v", id, err)
		}
		ids = append(ids, id)
		fmt.Printf("submitted %-24s %s\n", id, switchboard.StateName(reply.Assignment.State))
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

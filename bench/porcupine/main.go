// A harness for bench/checker.py: reads the operations it wrote (JSON),
// checks them with Porcupine against a register model partitioned by key,
// with a time limit (its second argument, e.g. 60s), and prints {"s": seconds, "result": "Ok"|"Illegal"|"Unknown"}.
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/anishathalye/porcupine"
)

type record struct {
	Client int             `json:"client"`
	Call   int64           `json:"call"`
	Ret    int64           `json:"ret"`
	F      string          `json:"f"`
	Key    string          `json:"key"`
	Value  json.RawMessage `json:"value"`
	Output *int64          `json:"output"`
	Info   bool            `json:"info"`
}

type input struct {
	f        string
	key      string
	old, new int64 // a cas's old may be nil: hasOld false
	hasOld   bool
}

type output struct {
	value   int64
	isNil   bool
	unknown bool
}

// nilState is the register before any write (Jepsen's nil).
const nilState = math.MinInt64

func step(state, in, out interface{}) (bool, interface{}) {
	s := state.(int64)
	i := in.(input)
	o := out.(output)
	switch i.f {
	case "read":
		if o.isNil {
			return s == nilState, s
		}
		return s == o.value, s
	case "write":
		return true, i.new
	default: // cas
		old := int64(nilState)
		if i.hasOld {
			old = i.old
		}
		if s == old {
			return true, i.new
		}
		// An info cas that did not match did not happen; an ok one must match.
		return o.unknown, s
	}
}

func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var records []record
	if err := json.Unmarshal(data, &records); err != nil {
		panic(err)
	}
	ops := make([]porcupine.Operation, 0, len(records))
	for _, r := range records {
		in := input{f: r.F, key: r.Key}
		switch r.F {
		case "write":
			if err := json.Unmarshal(r.Value, &in.new); err != nil {
				panic(err)
			}
		case "cas":
			var pair []*int64
			if err := json.Unmarshal(r.Value, &pair); err != nil {
				panic(err)
			}
			if pair[0] != nil {
				in.old, in.hasOld = *pair[0], true
			}
			in.new = *pair[1]
		}
		out := output{unknown: r.Info}
		if r.F == "read" {
			if r.Output == nil {
				out.isNil = true
			} else {
				out.value = *r.Output
			}
		}
		ret := r.Ret
		if r.Info {
			ret = math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{ClientId: r.Client, Input: in, Call: r.Call, Output: out, Return: ret})
	}
	model := porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range history {
				k := op.Input.(input).key
				if _, seen := byKey[k]; !seen {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			parts := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				parts = append(parts, byKey[k])
			}
			return parts
		},
		Init:  func() interface{} { return int64(nilState) },
		Step:  step,
		Equal: func(a, b interface{}) bool { return a.(int64) == b.(int64) },
	}
	start := time.Now()
	limit, err := time.ParseDuration(os.Args[2])
	if err != nil {
		panic(err)
	}
	result := porcupine.CheckOperationsTimeout(model, ops, limit)
	seconds := time.Since(start).Seconds()
	names := map[porcupine.CheckResult]string{porcupine.Ok: "Ok", porcupine.Illegal: "Illegal", porcupine.Unknown: "Unknown"}
	fmt.Printf("{\"s\": %f, \"result\": %q}\n", seconds, names[result])
}

/*
Copyright 2026 The registry-auth-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// instruction is one Dockerfile instruction: its keyword (upper case), its
// --flags and the rest of the line, continuation lines joined.
type instruction struct {
	line  int // where it starts, from 1
	cmd   string
	flags map[string]string
	args  string
}

// finalStage returns the instructions of the Dockerfile's last stage, its
// FROM first. Earlier stages are what the caller builds itself (their output
// is given with -stage). Comments, blank lines and backslash continuations
// are handled; parser directives and heredocs are not (none are used).
func finalStage(r io.Reader) ([]instruction, error) {
	var (
		all  []instruction
		cur  strings.Builder
		from int
		n    int
	)
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, rest, _ := strings.Cut(text, " ")
		ins := instruction{line: from, cmd: strings.ToUpper(cmd), flags: map[string]string{}}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			var flag string
			flag, rest, _ = strings.Cut(rest, " ")
			rest = strings.TrimSpace(rest)
			name, value, ok := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
			if !ok {
				return fmt.Errorf("line %d: flag %s without a value", from, flag)
			}
			ins.flags[name] = value
		}
		ins.args = rest
		all = append(all, ins)
		return nil
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (cur.Len() == 0 && trimmed == "") {
			continue
		}
		if cur.Len() == 0 {
			from = n
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	last := -1
	for i, ins := range all {
		if ins.cmd == "FROM" {
			last = i
		}
	}
	if last < 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return all[last:], nil
}

// execForm parses ["a", "b"] (ENTRYPOINT and CMD in exec form). The shell
// form would need /bin/sh, which a distroless image does not have.
func execForm(ins instruction) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(ins.args), &out); err != nil || len(out) == 0 {
		return nil, fmt.Errorf("line %d: %s must be in exec form, [\"/path\", ...] (there is no shell in the image): %q", ins.line, ins.cmd, ins.args)
	}
	return out, nil
}

package builder

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Plan is a parsed, checked Dockerfile: the build stages in order. Words are
// kept unexpanded; variables are substituted when the step runs, with the
// stage's environment and build args at that point.
type Plan struct {
	// MetaArgs are the ARGs before the first FROM (usable in FROM lines).
	MetaArgs []ArgDecl
	// Stages in file order.
	Stages []Stage
	// Escape is the Dockerfile's escape character.
	Escape rune
}

// ArgDecl declares one build argument, with an optional default.
type ArgDecl struct {
	Name    string
	Default *string
}

// Stage is one FROM … section.
type Stage struct {
	// Name is the lower-cased AS name, or "".
	Name string
	// Base is the FROM word (unexpanded): an image ref, a stage name, or
	// "scratch".
	Base string
	// Line is the FROM's line.
	Line int
	// Steps are the stage's instructions in order.
	Steps []Step
}

// Step is one instruction of a stage.
type Step struct {
	// Kind is the instruction in upper case: RUN, COPY, ADD, ENV, ARG,
	// WORKDIR, USER, EXPOSE, CMD, ENTRYPOINT, LABEL, SHELL, STOPSIGNAL.
	Kind string
	// Line is where the instruction starts in the Dockerfile.
	Line int
	// Source is the instruction as written (for history and messages).
	Source string
	// Cmd is the command line of RUN, CMD and ENTRYPOINT, the shell of
	// SHELL.
	Cmd []string
	// Shell is true for the shell form of RUN, CMD and ENTRYPOINT.
	Shell bool
	// Sources, Dest, From, Chown and Chmod describe COPY and ADD.
	Sources []string
	Dest    string
	From    string
	Chown   string
	Chmod   string
	// Pairs are ENV and LABEL key/value pairs.
	Pairs []KeyValue
	// Args are the declarations of one ARG instruction.
	Args []ArgDecl
	// Value is the word of WORKDIR, USER and STOPSIGNAL.
	Value string
	// Ports are EXPOSE's words.
	Ports []string
}

// KeyValue is one ENV or LABEL pair.
type KeyValue struct {
	Key   string
	Value string
}

func planError(line int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrDockerfile, line, fmt.Sprintf(format, args...))
}

// ParseDockerfile parses a Dockerfile with moby/buildkit's parser and turns
// it into a Plan, rejecting what the builder does not support with an error
// that names the line.
func ParseDockerfile(r io.Reader) (*Plan, error) {
	res, err := parser.Parse(r)
	if err != nil {
		var loc *parser.LocationError
		if errors.As(err, &loc) && len(loc.Locations) > 0 && len(loc.Locations[0]) > 0 {
			return nil, planError(loc.Locations[0][0].Start.Line, "%v", loc.Unwrap())
		}
		return nil, fmt.Errorf("%w: %v", ErrDockerfile, err)
	}
	p := &Plan{Escape: res.EscapeToken}
	names := map[string]int{}
	for _, n := range res.AST.Children {
		line := n.StartLine
		if len(n.Heredocs) > 0 {
			return nil, planError(line, "heredocs are not supported")
		}
		inst, err := instructions.ParseInstruction(n)
		if err != nil {
			var unknown *instructions.UnknownInstructionError
			if errors.As(err, &unknown) {
				return nil, planError(line, "unknown instruction %s", strings.ToUpper(n.Value))
			}
			return nil, planError(line, "%s: %v", strings.ToUpper(n.Value), unwrapLocation(err))
		}
		if st, ok := inst.(*instructions.Stage); ok {
			if st.Platform != "" {
				return nil, planError(line, "FROM --platform is not supported")
			}
			name := strings.ToLower(st.Name)
			if name != "" {
				if prev, dup := names[name]; dup {
					return nil, planError(line, "stage name %q is already used on line %d", name, prev)
				}
				names[name] = line
			}
			p.Stages = append(p.Stages, Stage{Name: name, Base: st.BaseName, Line: line})
			continue
		}
		if len(p.Stages) == 0 {
			a, ok := inst.(*instructions.ArgCommand)
			if !ok {
				return nil, planError(line, "%s before the first FROM; only ARG may come before FROM", strings.ToUpper(n.Value))
			}
			p.MetaArgs = append(p.MetaArgs, argDecls(a)...)
			continue
		}
		step, err := toStep(inst, line, n.Original)
		if err != nil {
			return nil, err
		}
		cur := &p.Stages[len(p.Stages)-1]
		cur.Steps = append(cur.Steps, step)
	}
	if len(p.Stages) == 0 {
		return nil, fmt.Errorf("%w: no FROM instruction", ErrDockerfile)
	}
	// COPY --from must name an earlier stage (or an image, by a ref that is
	// not a stage name).
	for i, st := range p.Stages {
		if j := p.stageIndex(st.Base); j >= i {
			return nil, planError(st.Line, "FROM %s refers to this or a later stage", st.Base)
		}
		for _, s := range st.Steps {
			if s.From == "" {
				continue
			}
			if j := p.stageIndex(s.From); j >= i {
				return nil, planError(s.Line, "COPY --from=%s refers to this or a later stage", s.From)
			}
		}
	}
	return p, nil
}

// stageIndex finds a stage by name or number; -1 when ref is not a stage.
func (p *Plan) stageIndex(ref string) int {
	l := strings.ToLower(ref)
	for i, st := range p.Stages {
		if st.Name != "" && st.Name == l {
			return i
		}
	}
	if n, err := strconv.Atoi(ref); err == nil && n >= 0 && n < len(p.Stages) {
		return n
	}
	return -1
}

func unwrapLocation(err error) error {
	var loc *parser.LocationError
	if errors.As(err, &loc) && loc.Unwrap() != nil {
		return loc.Unwrap()
	}
	return err
}

func argDecls(a *instructions.ArgCommand) []ArgDecl {
	var out []ArgDecl
	for _, kv := range a.Args {
		out = append(out, ArgDecl{Name: kv.Key, Default: kv.Value})
	}
	return out
}

func toStep(inst any, line int, orig string) (Step, error) {
	s := Step{Line: line, Source: strings.TrimSpace(orig)}
	switch c := inst.(type) {
	case *instructions.RunCommand:
		s.Kind = "RUN"
		if len(c.FlagsUsed) > 0 {
			return s, planError(line, "RUN --%s is not supported", c.FlagsUsed[0])
		}
		if len(c.Files) > 0 {
			return s, planError(line, "RUN heredocs are not supported")
		}
		s.Cmd, s.Shell = c.CmdLine, c.PrependShell
		if len(s.Cmd) == 0 {
			return s, planError(line, "RUN needs a command")
		}
	case *instructions.CmdCommand:
		s.Kind, s.Cmd, s.Shell = "CMD", c.CmdLine, c.PrependShell
	case *instructions.EntrypointCommand:
		s.Kind, s.Cmd, s.Shell = "ENTRYPOINT", c.CmdLine, c.PrependShell
	case *instructions.ShellCommand:
		s.Kind, s.Cmd = "SHELL", c.Shell
	case *instructions.CopyCommand:
		s.Kind = "COPY"
		if c.Parents {
			return s, planError(line, "COPY --parents is not supported")
		}
		if len(c.ExcludePatterns) > 0 {
			return s, planError(line, "COPY --exclude is not supported")
		}
		if len(c.SourceContents) > 0 {
			return s, planError(line, "COPY heredocs are not supported")
		}
		s.Sources, s.Dest, s.From, s.Chown, s.Chmod = c.SourcePaths, c.DestPath, c.From, c.Chown, c.Chmod
	case *instructions.AddCommand:
		s.Kind = "ADD"
		switch {
		case c.Checksum != "":
			return s, planError(line, "ADD --checksum is not supported")
		case c.KeepGitDir != nil:
			return s, planError(line, "ADD --keep-git-dir is not supported")
		case c.Unpack != nil:
			return s, planError(line, "ADD --unpack is not supported")
		case len(c.ExcludePatterns) > 0:
			return s, planError(line, "ADD --exclude is not supported")
		case len(c.SourceContents) > 0:
			return s, planError(line, "ADD heredocs are not supported")
		}
		for _, src := range c.SourcePaths {
			if strings.Contains(src, "://") || strings.HasPrefix(src, "git@") {
				return s, planError(line, "ADD from a URL (%s) is not supported; fetch it in a RUN step", src)
			}
		}
		s.Sources, s.Dest, s.Chown, s.Chmod = c.SourcePaths, c.DestPath, c.Chown, c.Chmod
	case *instructions.EnvCommand:
		s.Kind = "ENV"
		for _, kv := range c.Env {
			s.Pairs = append(s.Pairs, KeyValue{kv.Key, kv.Value})
		}
	case *instructions.LabelCommand:
		s.Kind = "LABEL"
		for _, kv := range c.Labels {
			s.Pairs = append(s.Pairs, KeyValue{kv.Key, kv.Value})
		}
	case *instructions.ArgCommand:
		s.Kind, s.Args = "ARG", argDecls(c)
	case *instructions.WorkdirCommand:
		s.Kind, s.Value = "WORKDIR", c.Path
	case *instructions.UserCommand:
		s.Kind, s.Value = "USER", c.User
	case *instructions.StopSignalCommand:
		s.Kind, s.Value = "STOPSIGNAL", c.Signal
	case *instructions.ExposeCommand:
		s.Kind, s.Ports = "EXPOSE", c.Ports
	case instructions.Command:
		return s, planError(line, "%s is not supported", strings.ToUpper(c.Name()))
	default:
		return s, planError(line, "unexpected instruction %T", inst)
	}
	return s, nil
}

// ParseDockerfileBytes is ParseDockerfile over a byte slice.
func ParseDockerfileBytes(b []byte) (*Plan, error) {
	return ParseDockerfile(bytes.NewReader(b))
}

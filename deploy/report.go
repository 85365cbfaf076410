package deploy

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"
)

// Instance is one line of ps:report.
type Instance struct {
	// Name is "type.N", e.g. "web.1".
	Name string
	// Type is the process type and Number the instance number.
	Type   string
	Number int
	// State is "up", "starting", "stopping", "crashed" (waiting for its
	// restart) or "stopped" (the app was stopped with ps:stop).
	State string
	// Release is the release version the instance runs.
	Release int
	// ContainerID, IP and Pid identify the container.
	ContainerID string
	IP          string
	Pid         int
	// StartedAt is when the container started; Uptime is since then.
	StartedAt time.Time
	Uptime    time.Duration
	// Restarts counts the crash restarts of this slot since the last deploy.
	Restarts int
	// LastExit describes the last crash (exit code, signal, out of memory).
	LastExit   string
	LastExitAt time.Time
	// NextRestart is when a crashed slot is started again.
	NextRestart time.Time
	// MemoryBytes, MemoryLimitBytes and CPUTime are engine readings.
	MemoryBytes      uint64
	MemoryLimitBytes uint64
	CPUTime          time.Duration
}

// Instances returns the app's instances and crashed slots, sorted by name
// (the data behind ps:report).
func (d *Deployer) Instances(ctx context.Context, app string) ([]Instance, error) {
	a, err := d.app(app)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if a.rel == nil && len(a.insts) == 0 {
		d.mu.Unlock()
		// Not loaded yet (no reconcile ran): load the desired state.
		a.op.Lock()
		err := d.refresh(ctx, a)
		a.op.Unlock()
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
	}
	var out []Instance
	seen := map[string]bool{}
	now := time.Now()
	for _, in := range a.insts {
		r := Instance{
			Name: in.proc(), Type: in.typ, Number: in.num, State: in.state, Release: in.release,
			ContainerID: in.id, IP: in.ip, Pid: in.pid, StartedAt: in.started, Uptime: now.Sub(in.started).Round(time.Second),
		}
		if s := a.slots[in.proc()]; s != nil {
			r.Restarts, r.LastExit, r.LastExitAt = s.restarts, s.lastExit, s.lastExitAt
		}
		if in.state != stateStopping {
			seen[in.proc()] = true
		}
		out = append(out, r)
	}
	want := a.desired()
	for proc, s := range a.slots {
		typ, num := splitProc(proc)
		if seen[proc] || num > want[typ] || s.timer == nil {
			continue
		}
		out = append(out, Instance{Name: proc, Type: typ, Number: num, State: "crashed",
			Restarts: s.restarts, LastExit: s.lastExit, LastExitAt: s.lastExitAt, NextRestart: s.nextRestart})
	}
	if a.stopped && len(out) == 0 {
		for _, typ := range sortedTypes(a.formation) {
			for n := 1; n <= a.formation[typ].Quantity; n++ {
				out = append(out, Instance{Name: typ + "." + itoa(n), Type: typ, Number: n, State: "stopped"})
			}
		}
	}
	d.mu.Unlock()
	for i := range out {
		if out[i].ContainerID == "" {
			continue
		}
		if st, err := d.eng.Stats(out[i].ContainerID); err == nil {
			out[i].MemoryBytes, out[i].MemoryLimitBytes, out[i].CPUTime = st.MemoryBytes, st.MemoryLimitBytes, st.CPUTime
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Type != out[j].Type {
			return out[i].Type < out[j].Type
		}
		if out[i].Number != out[j].Number {
			return out[i].Number < out[j].Number
		}
		return out[i].StartedAt.After(out[j].StartedAt)
	})
	return out, nil
}

// Report writes ps:report for app: one line per instance with its state,
// release, uptime, restarts, last exit, memory, CPU time and address.
func (d *Deployer) Report(ctx context.Context, app string, w io.Writer) error {
	ins, err := d.Instances(ctx, app)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSTATE\tRELEASE\tUPTIME\tRESTARTS\tLAST EXIT\tMEMORY\tCPU\tADDRESS")
	for _, in := range ins {
		state, uptime, rel, mem, cpu, addr := in.State, "-", "-", "-", "-", "-"
		if in.ContainerID != "" {
			uptime = in.Uptime.String()
			rel = "v" + itoa(in.Release)
			mem = humanBytes(in.MemoryBytes)
			if in.MemoryLimitBytes > 0 {
				mem += "/" + humanBytes(in.MemoryLimitBytes)
			}
			cpu = in.CPUTime.Round(time.Millisecond).String()
			addr = in.IP
		}
		if in.State == "crashed" && !in.NextRestart.IsZero() {
			state = fmt.Sprintf("crashed (restart in %s)", time.Until(in.NextRestart).Round(100*time.Millisecond))
		}
		last := in.LastExit
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", in.Name, state, rel, uptime, in.Restarts, last, mem, cpu, addr)
	}
	if len(ins) == 0 {
		fmt.Fprintln(tw, "(no instances)")
	}
	return tw.Flush()
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
)

// runTestRole runs the helper roles that tests start as child processes.
// "parent" creates an Engine on BERTH_ENGINE_TEST_ROOT, starts a long
// container, prints its ID and sleeps until it is killed.
func runTestRole(role string) int {
	switch role {
	case "parent":
		e, err := New(Config{Root: os.Getenv("BERTH_ENGINE_TEST_ROOT"), BridgeName: os.Getenv("BERTH_ENGINE_TEST_BRIDGE"),
			Subnet: os.Getenv("BERTH_ENGINE_TEST_SUBNET"), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		spec := Spec{
			Layers:  []string{os.Getenv("BERTH_ENGINE_TEST_ROOTFS")},
			Process: Process{Args: []string{"sh", "-c", "echo adopted-log-line; trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done"}, Env: []string{"PATH=/bin"}},
			IDMap:   IDMap{HostUID: 300000, HostGID: 300000},
			Network: Network{Mode: NetworkBridge},
			Labels:  map[string]string{"app": "adopt"},
		}
		id, err := e.Run(context.Background(), spec)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("id:", id)
		select {}
	}
	return 2
}

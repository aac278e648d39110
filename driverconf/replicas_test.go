package driverconf

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReplicaURLsFromEnv(t *testing.T) {
	cfg, err := fromEnv(envLookup(map[string]string{
		EnvDatabaseURL:   "postgres://app:primarypw@db:6543/app",
		EnvReplicaURLs:   "postgres://app:r1pw@replica1:5432/app, postgresql://app:r2pw@h1:6432,h2:6432/app?pool_mode=session",
		EnvReplicaMaxLag: "3s",
		EnvReplicaWait:   "0.5",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"postgres://app:r1pw@replica1:5432/app", "postgresql://app:r2pw@h1:6432,h2:6432/app?pool_mode=session"}
	if !slices.Equal(cfg.ReplicaURLs, want) || cfg.ReplicaMaxLag != 3*time.Second || cfg.ReplicaWait != 500*time.Millisecond {
		t.Errorf("replicas %q, max lag %s, wait %s; want %q, 3s, 500ms", cfg.ReplicaURLs, cfg.ReplicaMaxLag, cfg.ReplicaWait, want)
	}
	// Each replica keeps its own pool mode when its URL says one, else the primary's.
	reps, err := cfg.replicas()
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 2 || reps[0].PoolMode != Transaction || reps[1].PoolMode != Session || reps[0].ReplicaURLs != nil {
		t.Errorf("replica configs: %v", reps)
	}
	for _, out := range []string{cfg.String(), fmt.Sprintf("%v|%+v", cfg, cfg), cfg.LogValue().String(), cfg.Explain()} {
		for _, pw := range []string{"primarypw", "r1pw", "r2pw"} {
			if strings.Contains(out, pw) {
				t.Errorf("password %q shown: %s", pw, out)
			}
		}
	}
	if !strings.Contains(cfg.Explain(), "replica:    postgres://app:xxxxx@replica1:5432/app (transaction mode") {
		t.Errorf("Explain does not show the replicas:\n%s", cfg.Explain())
	}
}

func TestReplicaURLsErrors(t *testing.T) {
	_, err := fromEnv(envLookup(map[string]string{
		EnvDatabaseURL: "postgres://app:pw@db/app",
		EnvReplicaURLs: "host=replica password=secret",
	}))
	checkField(t, err, EnvReplicaURLs)
	cfg := Config{URL: "postgres://app:pw@db/app", ReplicaURLs: []string{"postgres://app:pw@ok/app", "postgres://app:Zq9@x:/?#%41secret@db/app"}}
	err = cfg.Validate()
	checkField(t, err, "ReplicaURLs[1]")
	if strings.Contains(err.Error(), "41secret") || strings.Contains(err.Error(), "Zq9") {
		t.Errorf("error shows the password: %v", err)
	}
	cfg = Config{URL: "postgres://app:pw@db/app", ReplicaWait: -time.Second}
	checkField(t, cfg.Validate(), "ReplicaMaxLag/ReplicaWait")
}

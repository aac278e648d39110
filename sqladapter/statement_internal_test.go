package sqladapter

import "testing"

func TestSingleStatement(t *testing.T) {
	t.Parallel()
	tests := []struct {
		q    string
		want bool
	}{
		{"SELECT 1", true},
		{"SELECT 1;", true},
		{"SELECT 1; ", true},
		{"SELECT 1; -- done", true},
		{"SELECT 1; /* done */", true},
		{"SELECT 1 -- trailing comment", true},
		{"SELECT 1; SELECT 2", false},
		{"UPDATE t SET b = $1; DELETE FROM t", false},
		{"SELECT ';' AS semi", true},
		{"SELECT 'it''s; fine'", true},
		{`SELECT E'a\'; DROP TABLE t; --'`, true},
		{`SELECT 'a\'; DROP TABLE t`, false}, // standard strings: the backslash is literal
		{`SELECT "we;ird" FROM t`, true},
		{"SELECT $$; still a string$$", true},
		{"SELECT $tag$ $$ ; $tag$ || $1", true},
		{"SELECT $1, $2; DELETE FROM t", false},
		{"SELECT /* a /* nested ; */ comment */ 1", true},
		{"SELECT /* unterminated ; DELETE", false},
		{"SELECT 'unterminated; DELETE", false},
		{"SELECT $x$ unterminated; DELETE", false},
		{"SELECT 1 -- c\n; DELETE FROM t", false},
		{"DO $$ BEGIN PERFORM 1; END $$", true},
	}
	for _, tt := range tests {
		if got := singleStatement(tt.q); got != tt.want {
			t.Errorf("singleStatement(%q) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func FuzzSingleStatementNoPanic(f *testing.F) {
	for _, s := range []string{"SELECT 1", "SELECT $$;$$", "E'\\''", "/*/**/*/", "$1$", "'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		_ = singleStatement(q)
	})
}

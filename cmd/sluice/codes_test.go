package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Every error and log code sluice can emit is documented, so a user who
// greps the docs for the code in a log line finds what it means and what
// to do.
func TestEveryCodeIsDocumented(t *testing.T) {
	var docs strings.Builder
	for _, pattern := range []string{"../../README.md", "../../docs/*.md"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs.Write(b)
		}
	}
	if docs.Len() == 0 {
		t.Fatal("no docs found")
	}
	code := regexp.MustCompile(`"(SLUICE-[A-Z0-9]+(?:-[A-Z0-9]+)*)"`)
	missing := map[string]string{}
	for _, root := range []string{"../../cmd", "../../internal"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range code.FindAllStringSubmatch(string(src), -1) {
				c := m[1]
				if c == "SLUICE-TEST-CRASH" { // a test hook, off unless its variable is set
					continue
				}
				if !strings.Contains(docs.String(), "`"+c+"`") {
					missing[c] = path
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var list []string
	for c, path := range missing {
		list = append(list, c+" ("+path+")")
	}
	sort.Strings(list)
	if len(list) > 0 {
		t.Errorf("%d codes are not documented (README.md, docs/*.md):\n%s", len(list), strings.Join(list, "\n"))
	}
}

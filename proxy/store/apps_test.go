package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestListCurrentApps(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiSeedApp(t, s, 3, "three", `{"K":"v"}`, "c3", true)
	apiSeedApp(t, s, 1, "one", ``, "c1", true)
	apiSeedApp(t, s, 2, "downloading", `{}`, "", true)
	apiSeedApp(t, s, 4, "removed", `{}`, "c4", false)
	apps, err := s.ListCurrentApps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range apps {
		got = append(got, fmt.Sprintf("%d:%s:%s:%s", a.ID, a.Name, *a.CurrentCommit, a.Config))
	}
	if want := `[1:one:c1:{} 3:three:c3:{"K":"v"}]`; fmt.Sprint(got) != want {
		t.Errorf("apps = %v, want %s", got, want)
	}
}

func TestListCurrentAppsEmptyIsNotNil(t *testing.T) {
	s := openAPIStore(t)
	apps, err := s.ListCurrentApps(context.Background())
	if err != nil || apps == nil {
		t.Fatalf("ListCurrentApps = %v, %v; want empty non-nil", apps, err)
	}
}

func TestAppByID(t *testing.T) {
	s := openAPIStore(t)
	ctx := context.Background()
	apiSeedApp(t, s, 1, "one", `{}`, "c1", true)
	apiSeedApp(t, s, 2, "two", `{}`, "", true)
	a, err := s.AppByID(ctx, 1)
	if err != nil || a.CurrentCommit == nil || *a.CurrentCommit != "c1" || !a.InTarget {
		t.Errorf("app 1 = %+v, %v; want current commit c1, in target", a, err)
	}
	a, err = s.AppByID(ctx, 2)
	if err != nil || a.CurrentCommit != nil {
		t.Errorf("app 2 = %+v, %v; want no current commit", a, err)
	}
	if _, err := s.AppByID(ctx, 9); !errors.Is(err, ErrNotFound) {
		t.Errorf("app 9: err = %v, want ErrNotFound", err)
	}
}

//go:build linux

package spawn

import (
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// Identity is a resolved `user` setting.
type Identity struct {
	Cred *syscall.Credential
	Home string // "" when the user has no passwd entry
	Name string
}

// LookupUser reads a `user` value: a name, or uid[:gid] in numbers. The
// supplementary groups are the user's from /etc/group; a uid without a
// passwd entry gets none (setgroups(0), never root's groups).
func LookupUser(spec string) (*Identity, error) {
	name, gidStr, hasGid := strings.Cut(spec, ":")
	var u *user.User
	var err error
	uid, numeric := strconv.Atoi(name)
	if numeric == nil {
		if uid < 0 {
			return nil, fmt.Errorf("user %q: negative uid", spec)
		}
		u, _ = user.LookupId(name) // a bare uid need not exist in /etc/passwd
	} else {
		if u, err = user.Lookup(name); err != nil {
			return nil, fmt.Errorf("user %q: %w", spec, err)
		}
		if uid, err = strconv.Atoi(u.Uid); err != nil {
			return nil, fmt.Errorf("user %q: uid %q: %w", spec, u.Uid, err)
		}
	}
	id := &Identity{Cred: &syscall.Credential{Uid: uint32(uid), Groups: []uint32{}}}
	gid := -1
	if u != nil {
		id.Home, id.Name = u.HomeDir, u.Username
		if gid, err = strconv.Atoi(u.Gid); err != nil {
			return nil, fmt.Errorf("user %q: gid %q: %w", spec, u.Gid, err)
		}
		groups, err := u.GroupIds()
		if err != nil {
			return nil, fmt.Errorf("user %q: supplementary groups: %w", spec, err)
		}
		for _, g := range groups {
			n, err := strconv.Atoi(g)
			if err != nil {
				return nil, fmt.Errorf("user %q: group %q: %w", spec, g, err)
			}
			id.Cred.Groups = append(id.Cred.Groups, uint32(n))
		}
	}
	if hasGid {
		if gid, err = strconv.Atoi(gidStr); err != nil || gid < 0 {
			g, lerr := user.LookupGroup(gidStr)
			if lerr != nil {
				return nil, fmt.Errorf("user %q: group %q: %w", spec, gidStr, lerr)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	if gid < 0 {
		gid = uid // uid without a passwd entry and no gid: the same number, as runc does
	}
	id.Cred.Gid = uint32(gid)
	return id, nil
}

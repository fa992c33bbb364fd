// Command fakemain links the unit helper together with the heavy packages
// tend links (urfave/cli, BurntSushi/toml, net/http, encoding/json and
// tend's own), for the init-order test: started as a helper, none of their
// inits may run. It lives under testdata so that go build ./... skips it.
package main

import (
	"fmt"
	"net/http"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"

	_ "github.com/tendinit/tend/api"
	_ "github.com/tendinit/tend/config"
	_ "github.com/tendinit/tend/unit/helper"
)

func main() {
	fmt.Println("fakemain main", http.MethodGet, cli.NewApp().Name, toml.Key{"a"}.String())
}

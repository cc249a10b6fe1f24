package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// clientTimeout bounds one API call from the CLI.
const clientTimeout = 30 * time.Second

// client is the CLI's view of the HTTP API.
type client struct {
	addr  string
	token string
	http  *http.Client
}

// newClient reads VIGIL_ADDR and VIGIL_TOKEN; without VIGIL_TOKEN it uses
// the admin token in the data directory (VIGIL_DATA, default ./vigil-data)
// when readable.
func newClient() (*client, error) {
	addr := strings.TrimRight(os.Getenv("VIGIL_ADDR"), "/")
	if addr == "" {
		addr = "http://127.0.0.1:8080"
	}
	tok := strings.TrimSpace(os.Getenv("VIGIL_TOKEN"))
	if tok == "" {
		data := os.Getenv("VIGIL_DATA")
		if data == "" {
			data = "./vigil-data"
		}
		if b, err := os.ReadFile(filepath.Join(data, adminTokenFile)); err == nil {
			tok = strings.TrimSpace(string(b))
		}
	}
	if tok == "" {
		return nil, errors.New("no token: set VIGIL_TOKEN (or run where ./vigil-data/admin.token is readable)")
	}
	return &client{addr: addr, token: tok, http: &http.Client{Timeout: clientTimeout}}, nil
}

// send makes an API request with in (when not nil) as its JSON body, on
// hc, and returns the response; an API error comes back as "message (HTTP
// status)" with the body closed.
func (c *client) send(ctx context.Context, hc *http.Client, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.addr+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach vigil at %s: %w", c.addr, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, apiError(resp.StatusCode, b, path)
	}
	return resp, nil
}

// call sends in (when not nil) as JSON and decodes the answer into out.
func (c *client) call(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, c.http, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if out != nil {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = b
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
	}
	return nil
}

// apiError turns an error response into "message (HTTP status)".
func apiError(status int, body []byte, path string) error {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return fmt.Errorf("%s (HTTP %d)", e.Error.Message, status)
	}
	return fmt.Errorf("HTTP %d from %s", status, path)
}

// outputFlag adds -o/--output to a listing command.
func outputFlag(cmd *cobra.Command) *string {
	return cmd.Flags().StringP("output", "o", "table", "output format: table or json")
}

// list GETs path and prints the answer as JSON (output "json") or,
// decoded into T, as the table render makes of it.
func list[T any](cmd *cobra.Command, output, path string, render func(T) (header []string, rows [][]string)) error {
	if output != "table" && output != "json" {
		return fmt.Errorf("output %q: want table or json", output)
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.call(cmd.Context(), "GET", path, nil, &raw); err != nil {
		return err
	}
	if output == "json" {
		return printJSON(cmd.OutOrStdout(), raw)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	header, rows := render(v)
	return table(cmd.OutOrStdout(), header, rows)
}

func printJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		_, err = w.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}

// table writes aligned columns.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// newRemoveCmd is `NOUN rm ID`: DELETE pathPrefix/ID.
func newRemoveCmd(noun, pathPrefix string) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID",
		Short: "Remove a " + noun,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			if err := c.call(cmd.Context(), "DELETE", pathPrefix+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		},
	}
}

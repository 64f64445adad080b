// Command shipyard-go calls a Shipyard server over gRPC with the Go code generated from
// Shipyard's .proto files: the KServe V2 GRPCInferenceService (ServerLive, ModelMetadata,
// ModelInfer) and the seed's ModelService (Predict). It prints one JSON object per call
// (JSON lines), so scripts and tests can read its answers.
//
//	shipyard-go -addr 127.0.0.1:8001 -model risk
//	shipyard-go -addr 127.0.0.1:8001 -model risk -features 13.5,14.4,87.5,...
//
// Build it with clients/go/build.sh (see the README's "Go client").
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	inference "shipyard/gen/inference"
	modelservice "shipyard/gen/modelservice"
)

// riskRow is the first row of scikit-learn's breast-cancer data (a malignant tumour): the
// demo model risk's 30 features.
const riskRow = "17.99,10.38,122.8,1001,0.1184,0.2776,0.3001,0.1471,0.2419,0.07871,1.095," +
	"0.9053,8.589,153.4,0.006399,0.04904,0.05373,0.01587,0.03003,0.006193,25.38,17.33,184.6," +
	"2019,0.1622,0.6656,0.7119,0.2654,0.4601,0.1189"

type tensorInfo struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

type outputTensor struct {
	Name     string        `json:"name"`
	Datatype string        `json:"datatype"`
	Shape    []int64       `json:"shape"`
	Data     []interface{} `json:"data"`
}

func emit(v interface{}) {
	line, err := json.Marshal(v)
	if err != nil {
		fail("json", err)
	}
	fmt.Println(string(line))
}

func fail(call string, err error) {
	emit(map[string]string{"call": call, "error": err.Error()})
	os.Exit(1)
}

func parseFeatures(text string) ([]float32, error) {
	parts := strings.Split(text, ",")
	values := make([]float32, 0, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 32)
		if err != nil {
			return nil, fmt.Errorf("-features: value %d (%q) is not a number; give "+
				"comma-separated numbers", i+1, p)
		}
		values = append(values, float32(v))
	}
	return values, nil
}

// decode turns one output tensor (raw little-endian bytes, or typed contents) into JSON values.
func decode(out *inference.ModelInferResponse_InferOutputTensor, raw []byte) ([]interface{}, error) {
	var data []interface{}
	if raw == nil {
		c := out.GetContents()
		switch out.GetDatatype() {
		case "FP32":
			for _, v := range c.GetFp32Contents() {
				data = append(data, v)
			}
		case "FP64":
			for _, v := range c.GetFp64Contents() {
				data = append(data, v)
			}
		case "INT64":
			for _, v := range c.GetInt64Contents() {
				data = append(data, v)
			}
		case "INT8", "INT16", "INT32":
			for _, v := range c.GetIntContents() {
				data = append(data, v)
			}
		case "BOOL":
			for _, v := range c.GetBoolContents() {
				data = append(data, v)
			}
		case "BYTES":
			for _, v := range c.GetBytesContents() {
				data = append(data, string(v))
			}
		default:
			return nil, fmt.Errorf("output %q: datatype %s is not decoded by this example",
				out.GetName(), out.GetDatatype())
		}
		return data, nil
	}
	switch out.GetDatatype() {
	case "FP32":
		for i := 0; i+4 <= len(raw); i += 4 {
			data = append(data, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
		}
	case "FP64":
		for i := 0; i+8 <= len(raw); i += 8 {
			data = append(data, math.Float64frombits(binary.LittleEndian.Uint64(raw[i:])))
		}
	case "INT64":
		for i := 0; i+8 <= len(raw); i += 8 {
			data = append(data, int64(binary.LittleEndian.Uint64(raw[i:])))
		}
	case "INT32":
		for i := 0; i+4 <= len(raw); i += 4 {
			data = append(data, int32(binary.LittleEndian.Uint32(raw[i:])))
		}
	case "BOOL":
		for _, b := range raw {
			data = append(data, b != 0)
		}
	case "BYTES": // each element: 4-byte little-endian length, then the bytes
		for i := 0; i+4 <= len(raw); {
			n := int(binary.LittleEndian.Uint32(raw[i:]))
			i += 4
			if i+n > len(raw) {
				return nil, fmt.Errorf("output %q: truncated BYTES element", out.GetName())
			}
			data = append(data, string(raw[i:i+n]))
			i += n
		}
	default:
		return nil, fmt.Errorf("output %q: datatype %s is not decoded by this example",
			out.GetName(), out.GetDatatype())
	}
	return data, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8001", "the server's gRPC address (host:port)")
	model := flag.String("model", "risk", "the model to call")
	version := flag.String("version", "", "the model version (empty: the newest ready one)")
	features := flag.String("features", riskRow,
		"comma-separated numbers: one row, sent as an FP32 tensor of shape [1, N] "+
			"(default: the demo model risk's first breast-cancer row)")
	input := flag.String("input", "", "the input's name (empty: the model's first input, "+
		"from ModelMetadata)")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of each call")
	flag.Parse()

	row, err := parseFeatures(*features)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}

	dialCtx, cancel := context.WithTimeout(context.Background(), *timeout)
	conn, err := grpc.DialContext(dialCtx, *addr, grpc.WithInsecure(), grpc.WithBlock())
	cancel()
	if err != nil {
		fail("dial", fmt.Errorf("cannot connect to %s: %v", *addr, err))
	}
	defer conn.Close()
	v2 := inference.NewGRPCInferenceServiceClient(conn)
	seed := modelservice.NewModelServiceClient(conn)
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), *timeout)
	}

	ctx, cancel := call()
	live, err := v2.ServerLive(ctx, &inference.ServerLiveRequest{})
	cancel()
	if err != nil {
		fail("ServerLive", err)
	}
	emit(map[string]interface{}{"call": "ServerLive", "live": live.GetLive()})

	ctx, cancel = call()
	meta, err := v2.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: *model,
		Version: *version})
	cancel()
	if err != nil {
		fail("ModelMetadata", err)
	}
	tensors := func(ts []*inference.ModelMetadataResponse_TensorMetadata) []tensorInfo {
		infos := []tensorInfo{}
		for _, t := range ts {
			infos = append(infos, tensorInfo{t.GetName(), t.GetDatatype(), t.GetShape()})
		}
		return infos
	}
	emit(map[string]interface{}{"call": "ModelMetadata", "name": meta.GetName(),
		"versions": meta.GetVersions(), "platform": meta.GetPlatform(),
		"inputs": tensors(meta.GetInputs()), "outputs": tensors(meta.GetOutputs())})

	name := *input
	if name == "" {
		if len(meta.GetInputs()) == 0 {
			fail("ModelInfer", fmt.Errorf("model %q lists no inputs; give -input", *model))
		}
		name = meta.GetInputs()[0].GetName()
	}
	request := &inference.ModelInferRequest{
		ModelName:    *model,
		ModelVersion: *version,
		Inputs: []*inference.ModelInferRequest_InferInputTensor{{
			Name:     name,
			Datatype: "FP32",
			Shape:    []int64{1, int64(len(row))},
			Contents: &inference.InferTensorContents{Fp32Contents: row},
		}},
	}
	ctx, cancel = call()
	answer, err := v2.ModelInfer(ctx, request)
	cancel()
	if err != nil {
		fail("ModelInfer", err)
	}
	outputs := []outputTensor{}
	for i, out := range answer.GetOutputs() {
		var raw []byte
		if i < len(answer.GetRawOutputContents()) {
			raw = answer.GetRawOutputContents()[i]
		}
		data, err := decode(out, raw)
		if err != nil {
			fail("ModelInfer", err)
		}
		outputs = append(outputs, outputTensor{out.GetName(), out.GetDatatype(), out.GetShape(),
			data})
	}
	emit(map[string]interface{}{"call": "ModelInfer", "model": answer.GetModelName(),
		"version": answer.GetModelVersion(), "outputs": outputs})

	// The seed API names no model: the server's gRPC metadata 'model' chooses one (without it,
	// the server's default model answers).
	ctx, cancel = call()
	ctx = metadata.AppendToOutgoingContext(ctx, "model", *model)
	score, err := seed.Predict(ctx, &modelservice.ModelRequest{Features: row})
	cancel()
	if err != nil {
		fail("Predict", err)
	}
	emit(map[string]interface{}{"call": "Predict", "model": *model, "score": score.GetScore()})
}

# frozen_string_literal: true

require 'socket'
require 'h1p'

# With Polyphony running on the thread, an IO source is read by the backend from its
# descriptor, with no Ruby method call; other fibers run while the parser waits.
RSpec.describe 'H1P::Parser fast path' do
  let(:counting) do
    Class.new(UNIXSocket) do
      attr_reader :calls

      def readpartial(*args)
        @calls = (@calls || 0) + 1
        super
      end
    end
  end

  it 'reads the socket through the backend, not readpartial, and lets other fibers run' do
    a, b = counting.pair
    ticks = 0
    ticker = spin { loop { sleep 0.005; ticks += 1 } }
    parser = H1P::Parser.new(a)
    spin do
      sleep 0.03
      b << "GET /slow HTTP/1.1\r\nHost: x\r\n"
      sleep 0.01
      b << "\r\n"
    end
    expect(parser.parse_headers[':path']).to eq('/slow')
    expect(a.calls).to be_nil
    expect(ticks).to be >= 3
    ticker.stop
  end

  it "takes Ruby's path when Ruby's own buffer holds bytes (after gets)" do
    a, b = counting.pair
    b << "PREFACE\nGET /after HTTP/1.1\r\n\r\n"
    expect(a.gets).to eq("PREFACE\n")
    expect(H1P::Parser.new(a).parse_headers[':path']).to eq('/after')
    expect(a.calls).to be >= 1
  end

  it 'uses readpartial on a thread that does not run Polyphony fibers' do
    a, b = counting.pair
    b << "GET /thread HTTP/1.1\r\n\r\n"
    path = Thread.new { H1P::Parser.new(a).parse_headers[':path'] }.value
    expect(path).to eq('/thread')
    expect(a.calls).to be >= 1
  end

  it 'splices a Content-Length body into a file or a pipe in the kernel' do
    require 'tempfile'
    body = Random.bytes(300_000)
    [:file, :pipe].each do |kind|
      a, b = counting.pair
      writer = spin { b << "POST /up HTTP/1.1\r\nContent-Length: #{body.bytesize}\r\n\r\n#{body}"; b.close }
      parser = H1P::Parser.new(a)
      expect(parser.parse_headers[':path']).to eq('/up')
      if kind == :file
        out = Tempfile.new('body')
        expect(parser.splice_body_to(out)).to eq(body.bytesize)
        out.flush
        expect(File.binread(out.path)).to eq(body)
        out.close!
      else
        pipe = Polyphony.pipe
        reader = spin { pipe.read_io.read }
        expect(parser.splice_body_to(pipe.write_io)).to eq(body.bytesize)
        pipe.close_write
        expect(reader.await.b).to eq(body)
      end
      expect(parser.complete?).to be(true)
      expect(a.calls).to be_nil
      writer.await
    end
  end

  it 'says so when the connection closes inside a spliced body' do
    a, b = UNIXSocket.pair
    b << "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort"
    b.close
    parser = H1P::Parser.new(a)
    parser.parse_headers
    expect { parser.splice_body_to(Polyphony.pipe.write_io) }
      .to raise_error(H1P::Error, 'connection closed inside the body (95 bytes missing)')
    expect { parser.parse_headers }.to raise_error(H1P::Error, /closed inside the body/)
  end

  it 'is interrupted like any waiting fiber' do
    a, _b = UNIXSocket.pair
    parser = H1P::Parser.new(a)
    result = move_on_after(0.02, with_value: :timed_out) { parser.parse_headers }
    expect(result).to eq(:timed_out)
  end
end

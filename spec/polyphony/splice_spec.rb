# frozen_string_literal: true

require 'socket'
require 'tempfile'

RSpec.describe 'splice, tee, pipes and compression' do
  # Each example runs with the kernel's splice(2)/tee(2) and with the emulation forced.
  [false, true].each do |emulated|
    context(emulated ? 'emulated (read/write through a buffer)' : "with the kernel's splice") do
      around do |example|
        Polyphony.emulate_splice = emulated
        example.run
      ensure
        Polyphony.emulate_splice = false
      end

      it 'splices up to n bytes, or everything until EOF with a negative n' do
        src = Polyphony.pipe
        dest = Polyphony.pipe
        src << 'hello world'
        expect(IO.splice(src, dest, 5)).to eq(5)
        spin { sleep 0.01; src << '!'; src.close_write }
        expect(dest.splice_from(src, -1)).to eq(7)
        dest.close_write
        expect(dest.read).to eq('hello world!')
      end

      it 'moves a file to a socket through a pipe of its own (double_splice)' do
        file = Tempfile.new('splice')
        file.write('x' * 200_000)
        file.flush
        a, b = UNIXSocket.pair
        reader = spin { b.read.size }
        expect(IO.double_splice(File.open(file.path), a)).to eq(200_000)
        a.close
        expect(reader.await).to eq(200_000)
      ensure
        file&.close!
      end

      it "hands over what Ruby's own buffer holds before reading the descriptor" do
        a, b = UNIXSocket.pair
        b << "line one\nrest of it"
        b.close
        expect(a.gets).to eq("line one\n")
        dest = Polyphony.pipe
        expect(IO.splice(a, dest, -1)).to eq(10)
        dest.close_write
        expect(dest.read).to eq('rest of it')
      end
    end
  end

  it 'tees from pipe to pipe without consuming' do
    src = Polyphony.pipe
    copy = Polyphony.pipe
    out = Polyphony.pipe
    src << 'teed'
    expect(copy.tee_from(src, 100)).to eq(4)
    expect(IO.splice(src, out, 100)).to eq(4)
    [copy, out].each(&:close_write)
    expect([copy.read, out.read]).to eq(%w[teed teed])
  end

  it 'compresses and decompresses streams: gzip/gunzip, deflate/inflate' do
    plain = Polyphony.pipe
    gzipped = Polyphony.pipe
    back = Polyphony.pipe
    text = 'compress me ' * 5000
    spin { plain << text; plain.close_write }
    spin { IO.gzip(plain, gzipped); gzipped.close_write }
    spin { IO.gunzip(gzipped, back); back.close_write }
    expect(back.read).to eq(text)

    src = Polyphony.pipe
    deflated = Polyphony.pipe
    inflated = Polyphony.pipe
    spin { src << text; src.close_write }
    spin { IO.deflate(src, deflated); deflated.close_write }
    spin { IO.inflate(deflated, inflated); inflated.close_write }
    expect(inflated.read).to eq(text)
  end
end

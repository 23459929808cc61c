# frozen_string_literal: true

require 'open3'
require 'socket'
require 'tmpdir'

# The C library installed as C programs use it: `rake capi PREFIX=DIR`, then the C tests and the
# examples (the parser's and the event loop's) compiled with nothing but what pkg-config says,
# against the shared library (found by its SONAME) and the static one.
RSpec.describe 'the C library, installed (rake capi)' do
  before(:all) do
    @prefix = Dir.mktmpdir('polyphony-capi')
    out, err, status = run_command('rake', 'capi', "PREFIX=#{@prefix}", limit: 900)
    raise "rake capi failed:\n#{out}#{err}" unless status.success?

    @env = { 'PKG_CONFIG_PATH' => File.join(@prefix, 'lib', 'pkgconfig') }
  end

  after(:all) do
    FileUtils.rm_rf(@prefix)
  end

  def pkg_config(*args)
    out, err, status = run_command(@env, 'pkg-config', *args, 'polyphony')
    raise "pkg-config failed: #{err}" unless status.success?

    out.split
  end

  def compile(source, output, *flags)
    _out, err, status = run_command('cc', '-std=c11', '-Wall', '-Wextra', '-Werror', '-D_DEFAULT_SOURCE', '-Itests/c',
                                    *pkg_config('--cflags'), source, '-o', output, *flags)
    raise "cc failed:\n#{err}" unless status.success?

    output
  end

  it 'installs the shared library with its SONAME, the static one, the header and polyphony.pc' do
    lib = File.join(@prefix, 'lib')
    expect(File.readlink(File.join(lib, 'libpolyphony.so'))).to eq('libpolyphony.so.0')
    out, = run_command('readelf', '-d', File.join(lib, 'libpolyphony.so.0.1.0'))
    expect(out).to include('Library soname: [libpolyphony.so.0]')
    expect(File.exist?(File.join(lib, 'libpolyphony.a'))).to be(true)
    expect(File.exist?(File.join(@prefix, 'include', 'polyphony.h'))).to be(true)
    expect(pkg_config('--modversion')).to eq(['0.1.0'])
  end

  it 'builds and runs the C tests with pkg-config, shared and static' do
    Dir.mktmpdir do |dir|
      { 'tests/c/h1p_test.c' => "h1p C ABI: all checks passed\n", 'tests/c/loop_test.c' => nil }.each do |source, said|
        name = File.basename(source, '.c')
        shared = compile(source, File.join(dir, "#{name}-shared"), *pkg_config('--libs'))
        out, = run_command('ldd', shared)
        expect(out).to include("libpolyphony.so.0 => #{File.join(@prefix, 'lib', 'libpolyphony.so.0')}").or include('libpolyphony.so.0 => not found')
        static = compile(source, File.join(dir, "#{name}-static"), File.join(@prefix, 'lib', 'libpolyphony.a'),
                         *pkg_config('--libs', '--static').reject { |flag| flag == '-lpolyphony' })
        [[shared, { 'LD_LIBRARY_PATH' => File.join(@prefix, 'lib') }], [static, {}]].each do |binary, env|
          out, err, status = run_command(env, binary)
          expect(status).to be_success, "#{binary}: #{err}"
          expect(out).to eq(said) if said
        end
      end
    end
  end

  it "builds the examples with pkg-config alone and runs them: the pull parser's and the event loop's" do
    Dir.mktmpdir do |dir|
      env = { 'LD_LIBRARY_PATH' => File.join(@prefix, 'lib') }
      requests = compile('examples/c/requests.c', File.join(dir, 'requests'), *pkg_config('--libs'))
      input = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" \
              "3\r\nabc\r\n0\r\nX-Sum: 7\r\n\r\nGET /c HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
      out, err, status = Open3.capture3(env, requests, stdin_data: input)
      expect(out).to eq("GET /a HTTP/1.1, 1 fields, 0 body bytes\n" \
                        "POST /b HTTP/1.1, 1 fields, 3 body bytes, trailer x-sum: 7\n")
      expect([status.exitstatus, err]).to eq([1, "requests: reading a head: repeated Content-Length " \
                                                 "(POLYPHONY_RESULT_INVALID_MESSAGE)\n"])

      echo = compile('examples/c/echo_server.c', File.join(dir, 'echo_server'), *pkg_config('--libs'))
      server = IO.popen(env, ['timeout', '30', echo, '1'])
      client = TCPSocket.new('127.0.0.1', server.gets.to_i)
      client.write('ping')
      expect(client.readpartial(10)).to eq('ping')
      client.close
      Process.wait(server.pid)
      expect($?.success?).to be(true)
    end
  end

  it 'says its version' do
    Dir.mktmpdir do |dir|
      File.write(source = File.join(dir, 'version.c'), <<~C)
        #include <stdio.h>
        #include <polyphony.h>
        int main(void) { puts(polyphony_version()); return 0; }
      C
      binary = compile(source, File.join(dir, 'version'), *pkg_config('--libs'))
      out, = run_command({ 'LD_LIBRARY_PATH' => File.join(@prefix, 'lib') }, binary)
      expect(out).to eq("0.1.0\n")
    end
  end
end

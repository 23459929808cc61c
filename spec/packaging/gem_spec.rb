# frozen_string_literal: true

require 'tmpdir'
require 'fileutils'
require 'find'

# The gem as its users get it: built, installed into a GEM_HOME of its own (the extension is
# compiled by cargo then), loaded, and `tipi` run from it; and the messages of a machine without
# cargo, and of a checkout whose extension was never built.
RSpec.describe 'the polyphony gem' do
  before(:all) do
    @dir = Dir.mktmpdir('polyphony-gem')
    out, err, status = run_command('gem', 'build', 'polyphony.gemspec', '--output', File.join(@dir, 'polyphony.gem'))
    raise "gem build failed:\n#{out}#{err}" unless status.success?

    @home = File.join(@dir, 'home')
    # (cargo's cache for the gem's build is this checkout's own target/, outside the gem: the
    # dependencies, built already, are reused, and only the gem's own crates are compiled)
    env = { 'GEM_HOME' => @home, 'CARGO_TARGET_DIR' => File.join(ROOT, 'target') }
    out, err, status = run_command(env, 'gem', 'install', '--local', '--no-document', File.join(@dir, 'polyphony.gem'),
                                   limit: 900)
    raise "gem install failed:\n#{out}#{err}" unless status.success?

    @gem_dir = Dir[File.join(@home, 'gems', 'polyphony-*')].first
  end

  after(:all) do
    FileUtils.rm_rf(@dir)
  end

  def size_of(dir)
    size = 0
    Find.find(dir) { |path| size += File.size(path) if File.file?(path) }
    size
  end

  it 'installs the built extension and its sources, not the build directory, in a few MB' do
    expect(Dir.exist?(File.join(@gem_dir, 'target'))).to be(false)
    expect(Dir[File.join(@gem_dir, 'lib', 'polyphony', 'polyphony_ext.so')]).not_to be_empty
    expect(size_of(@gem_dir)).to be < 12 << 20 # 7.4 MB here, 6 of them the library (docs/packaging.md)
  end

  it 'loads from the installed gem and runs tipi on the shipped example' do
    env = { 'GEM_HOME' => @home, 'GEM_PATH' => [@home, *Gem.path].join(':') } # (Debian's rack stays in reach)
    out, err, status = run_command(env, RbConfig.ruby, '-e', 'require "polyphony"; puts $LOADED_FEATURES.grep(/polyphony_ext/); p spin { :hello }.await')
    expect(status).to be_success, err
    expect(out).to include(@gem_dir, ":hello\n")
    tipi = TipiProcess.new('-l', '127.0.0.1:0', File.join(@gem_dir, 'examples', 'hello.ru'),
                           env: env, exe: File.join(@home, 'bin', 'tipi'))
    out, = run_command('curl', '-sS', "http://127.0.0.1:#{tipi.port}/hello")
    expect(out).to include('Hello')
  ensure
    tipi&.stop
  end

  it 'says that Rust is needed when cargo is missing' do
    Dir.mktmpdir do |build|
      env = { 'PATH' => '/usr/bin:/bin', 'HOME' => build, 'CARGO' => nil }
      # (in a directory of its own: extconf.rb writes its Makefile and mkmf.log where it runs)
      _out, err, status = Open3.capture3(env, RbConfig.ruby, File.join(ROOT, 'ext', 'polyphony', 'extconf.rb'),
                                         chdir: build)
      expect(status).not_to be_success
      # One line of ours (mkmf then adds its own report of the failure).
      expect(err.lines.grep(/polyphony:/)).to eq(["polyphony: building it needs Rust (cargo 1.80 or later): install it " \
                                                  "from https://rustup.rs (or `apt install cargo`), then install the gem again\n"])
    end
  end

  # What `gem install` does without CARGO_TARGET_DIR (the spec above sets one, to reuse the
  # checkout's cache), with a stand-in for cargo that "builds" the library where cargo would:
  # the build directory is a temporary one, outside the gem, and gone once the library is in.
  it 'builds in a temporary directory outside the gem, removed after the install, without CARGO_TARGET_DIR' do
    Dir.mktmpdir do |build|
      cargo = File.join(build, 'cargo')
      File.write(cargo, <<~SH)
        #!/bin/sh
        echo "$PWD $*" > #{build}/cargo.args
        mkdir -p "$CARGO_TARGET_DIR/release" && echo built > "$CARGO_TARGET_DIR/release/libpolyphony_ext.so"
      SH
      File.chmod(0o755, cargo)
      env = { 'CARGO' => cargo, 'CARGO_TARGET_DIR' => nil }
      _out, err, status = Open3.capture3(env, RbConfig.ruby, File.join(ROOT, 'ext', 'polyphony', 'extconf.rb'),
                                         chdir: build)
      expect(status).to be_success, err
      target_dir = File.read(File.join(build, 'Makefile'))[/CARGO_TARGET_DIR=(\S+)/, 1]
      expect(target_dir).to start_with(Dir.tmpdir).and(satisfy { |dir| !dir.start_with?(ROOT) })
      destdir = File.join(build, 'dest')
      out, err, status = Open3.capture3(env, 'make', 'install', "DESTDIR=#{destdir}", chdir: build)
      expect(status).to be_success, out + err
      expect(File.read(File.join(build, 'cargo.args'))).to eq("#{ROOT} build --locked --profile release -p polyphony-ext\n")
      expect(File.read(File.join(destdir, ROOT, 'lib', 'polyphony', 'polyphony_ext.so'))).to eq("built\n")
      expect(Dir.exist?(target_dir)).to be(false)
    end
  end

  it 'says to run rake compile in a checkout whose extension was never built' do
    Dir.mktmpdir do |checkout|
      FileUtils.cp_r(File.join(ROOT, 'lib'), checkout)
      FileUtils.rm_f(Dir[File.join(checkout, 'lib', 'polyphony', '*.so')])
      _out, err, status = run_command(RbConfig.ruby, '-I', File.join(checkout, 'lib'), '-e', 'require "polyphony"')
      expect(status).not_to be_success
      expect(err).to include('the native extension is not built', 'run `rake compile`')
    end
  end
end
